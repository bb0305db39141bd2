"""What a sweep YAML (or ``shirg-sweep --model_args``) may contain, checked before any cell runs.

A cell's name becomes a folder under ``output_root`` and its settings become one ``--model_args k=v,...`` string,
so both are inputs to paths and to a parser:

- **cell names** are one path component of ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (at most 128 characters): no ``/``,
  no ``..``, no absolute path, nothing hidden, so a cell can only ever write ``<output_root>/<name>``;
- **model_args keys** match ``[A-Za-z_]\\w*``; **values** are scalars (string, number, true/false) without
  ``,`` ``"`` ``'`` ``{`` ``}`` ``[`` ``]`` or a line break: lmms-eval 0.7.3 splits ``--model_args`` on commas,
  keeps quotes inside values (``k="144,x"`` gives ``"144,x"``) and lets an unmatched ``'`` swallow the arguments
  after it, so no quoting could carry those characters through. ``lora`` paths are model_args values too;
- **task and model names** match ``[A-Za-z0-9_][A-Za-z0-9_.-]*`` (they are joined with commas into ``--tasks``);
- **extra_args** may not set what the sweep sets itself (``--model``, ``--model_args``, ``--tasks``,
  ``--output_path``, ``--limit``): a cell's output stays in its folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

CELL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ARG_KEY = re.compile(r"[A-Za-z_]\w*")
TASK_OR_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
UNSAFE_VALUE_CHARS = frozenset(",\"'{}[]\n\r")
RESERVED_NAMES = frozenset({"plots", "leaderboard.md"})  # what shirg-sweep writes in output_root itself
SWEEP_OWNED_FLAGS = ("--model", "--model_args", "--model-args", "--tasks", "--output_path", "--output-path",
                     "--limit")


class SweepInputError(ValueError):
    """A sweep input that could escape the output root or inject command-line arguments."""


def check_cell_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not CELL_NAME.fullmatch(name):
        raise SweepInputError(
            f"{where}: cell name {name!r} is not a safe folder name; use 1-128 of A-Z a-z 0-9 _ . - starting with a "
            "letter or digit (no '/', no '..', not absolute): each cell writes <output_root>/<name>")
    if name in RESERVED_NAMES:
        raise SweepInputError(f"{where}: cell name {name!r} is where the sweep writes its leaderboard; rename the "
                              "cell")
    return name


def check_name(kind: str, name: Any, where: str) -> str:
    """A task or model name (joined with commas on the command line, so one name each)."""
    if not isinstance(name, str) or not TASK_OR_MODEL.fullmatch(name):
        raise SweepInputError(f"{where}: {kind} name {name!r} is not valid; use A-Z a-z 0-9 _ . - (one name per "
                              "list entry)")
    return name


def check_value(key: str, value: Any, where: str) -> None:
    if isinstance(value, (list, tuple, dict, set)):
        raise SweepInputError(f"{where}: model_args {key} must be a single value (string, number or true/false), "
                              f"got {type(value).__name__} {value!r}")
    if value is None or isinstance(value, (bool, int, float)):
        return
    text = str(value)
    bad = sorted(UNSAFE_VALUE_CHARS & set(text))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise SweepInputError(
            f"{where}: model_args {key}={text!r} contains {shown}, which lmms-eval's --model_args parser would split "
            "on or mangle (quoting does not help); rename the path or value so it has none of , \" ' { } [ ] or a "
            "line break")


def check_model_args(args: Mapping[str, Any], where: str) -> None:
    for key, value in args.items():
        if not isinstance(key, str) or not ARG_KEY.fullmatch(key):
            raise SweepInputError(f"{where}: model_args key {key!r} is not a valid name ([A-Za-z_][A-Za-z0-9_]*)")
        check_value(key, value, where)


def check_extra_args(extra: Iterable[str], where: str) -> None:
    for arg in extra:
        flag = str(arg).split("=", 1)[0]
        if flag in SWEEP_OWNED_FLAGS:
            raise SweepInputError(f"{where}: extra_args may not set {flag}: the sweep sets it for each cell (set "
                                  "model, model_args, tasks or limit as cell keys; output goes to output_root)")
        if "\n" in str(arg) or "\r" in str(arg):
            raise SweepInputError(f"{where}: extra_args entry {arg!r} contains a line break")


def check_limit(limit: Any, where: str) -> None:
    # lmms-eval reads --limit N as N documents, and a number below 1 as a fraction of each task.
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
        raise SweepInputError(f"{where}: limit must be a number > 0 (documents, or a fraction below 1) or null, got "
                              f"{limit!r}")
