"""The tasks' prompts and generation lengths, read from their lmms-eval YAMLs (``tasks/<name>/<name>.yaml``).

The YAMLs are the one place these facts live; code that builds a task's prompt outside lmms-eval (the reading sets'
conversations, the reference evaluation, the throughput bench, the demo) reads them here. Only the YAML text is
read: lmms-eval's ``!function`` tags load as their dotted names, so nothing of ``shirg_eval.tasks`` is imported
(this module is in the base layer).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TaskPrompting", "load_task_yaml", "task_prompting", "tasks_dir"]


class _TaggedLoader(yaml.SafeLoader):
    """A safe loader that reads any ``!tag value`` (lmms-eval's ``!function``) as its plain value."""


_TaggedLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def tasks_dir() -> Path:
    """The folder of the task YAMLs: the installed ``shirg_eval.tasks`` package, else the checkout's ``tasks/``.

    ``find_spec`` locates the package without running its ``__init__``; a checkout used without installing it
    has no ``shirg_eval.tasks`` (pyproject maps ``tasks/`` in), so the repository root's ``tasks/`` is the fallback.
    """
    try:
        spec = importlib.util.find_spec("shirg_eval.tasks")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "tasks"


def load_task_yaml(task: str, root: Path | None = None) -> dict[str, Any]:
    """The task's YAML as a dict, its ``include`` merged in underneath (as lmms-eval does: the task's keys win)."""
    path = (root or tasks_dir()) / task / f"{task}.yaml"
    return _load(path)


def _load(path: Path) -> dict[str, Any]:
    spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaggedLoader) or {}
    include = spec.pop("include", None)
    if include is None:
        return spec
    return {**_load((path.parent / include).resolve()), **spec}


@dataclass(frozen=True)
class TaskPrompting:
    """What a task puts around the question and how many answer tokens it asks for."""

    task: str
    pre_prompt: str
    post_prompt: str
    max_new_tokens: int

    def prompt(self, question: str) -> str:
        """The LM's text for a question, as the task's ``doc_to_text`` builds it."""
        return f"{self.pre_prompt}{question}{self.post_prompt}"


def task_prompting(task: str, root: Path | None = None) -> TaskPrompting:
    """The task's default ``lmms_eval_specific_kwargs`` prompts and its ``generation_kwargs.max_new_tokens``."""
    spec = load_task_yaml(task, root)
    kwargs = (spec.get("lmms_eval_specific_kwargs") or {}).get("default") or {}
    generation = spec.get("generation_kwargs") or {}
    if "max_new_tokens" not in generation:
        raise KeyError(f"task {task}: its YAML sets no generation_kwargs.max_new_tokens")
    return TaskPrompting(task=task, pre_prompt=kwargs.get("pre_prompt", ""), post_prompt=kwargs.get("post_prompt", ""),
                         max_new_tokens=int(generation["max_new_tokens"]))
