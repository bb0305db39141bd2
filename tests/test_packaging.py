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
    on_disk |= {"shirg_eval.tasks", "shirg_eval.configs"}
    on_disk |= {f"shirg_eval.tasks.{p.parent.name}" for p in (REPO / "tasks").glob("*/*.yaml")}
    on_disk = {p for p in on_disk if "__pycache__" not in p}
    assert declared == on_disk


def test_import_from_any_directory(tmp_path):
    code = ("import shirg_eval, shirg_eval.tasks, shirg_eval.configs, pathlib;"
            "t = pathlib.Path(shirg_eval.tasks.__file__).parent; c = pathlib.Path(shirg_eval.configs.__file__).parent;"
            "assert (t / 'chartqa_200' / 'chartqa_200.yaml').is_file(), t;"
            "assert (c / 'sweeps' / 'roadmap.yaml').is_file(), c; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr
