"""Packaging: the explicit package list covers the tree, and the installed package finds tasks/ and configs/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_package_list_matches_tree():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "shirg_eval").rglob("__init__.py")}
    for folder in ("tasks", "configs"):  # data folders mapped into the package: every subfolder ships
        for sub in [REPO / folder, *(p for p in (REPO / folder).rglob("*") if p.is_dir())]:
            if "__pycache__" not in sub.parts and any(f.is_file() for f in sub.iterdir()):
                on_disk.add(".".join(("shirg_eval", *sub.relative_to(REPO).parts)))
    assert declared == on_disk


def test_import_from_any_directory(tmp_path):
    code = ("import shirg_eval, shirg_eval.tasks, shirg_eval.configs, pathlib;"
            "t = pathlib.Path(shirg_eval.tasks.__file__).parent; c = pathlib.Path(shirg_eval.configs.__file__).parent;"
            "assert (t / 'chartqa_200' / 'chartqa_200.yaml').is_file(), t;"
            "assert (c / 'sweeps' / 'roadmap.yaml').is_file(), c; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_task_yamls_are_found_from_any_directory(tmp_path):
    """The prompts and generation lengths come from the package's task YAMLs, wherever the command runs."""
    code = ("from shirg_eval.data.reading import reading_task; from shirg_eval.data.task_yaml import tasks_dir;"
            "t = reading_task('doc'); print(tasks_dir().name, t.task, t.max_new_tokens)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["tasks", "docvqa_reading", "32"], proc.stderr
