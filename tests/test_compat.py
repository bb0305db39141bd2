"""lmms-eval's internals are used in harness/compat.py only, behind a version check at import."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

from shirg_eval.harness import compat

REPO = Path(__file__).resolve().parents[1]


def test_another_lmms_eval_version_fails_at_import_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.8.0" if name == "lmms_eval" else real(name))
    try:
        with pytest.raises(RuntimeError, match=r"written against lmms-eval 0\.7\.3, found 0\.8\.0; pin "
                                               r"lmms-eval==0\.7\.3") as err:
            importlib.reload(compat)
        assert type(err.value).__name__ == "LmmsEvalVersionError"
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
    compat.check_version()  # the installed one passes
    with pytest.raises(compat.LmmsEvalVersionError, match="found none"):
        compat.check_version("none")


def test_lmms_eval_internals_are_touched_in_compat_only() -> None:
    """The private entry points and the patched globals are named nowhere else in the source."""
    internals = ("lmms_eval.__main__", ".cli_evaluate_single", "evaluator.consolidate_results", "__wrapped__",
                 ".DATASET_PATH", ".DATASET_NAME")
    sources = list((REPO / "shirg_eval").rglob("*.py")) + list((REPO / "tasks").rglob("*.py"))
    found = sorted(f"{path.relative_to(REPO)}: {name}" for path in sources if path.name != "compat.py"
                   for name in internals if name in path.read_text(encoding="utf-8"))
    assert found == []


def test_the_wrapper_wraps_the_original_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmms_eval.__main__ as lmms_main

    original = lmms_main.cli_evaluate_single
    monkeypatch.setattr(lmms_main, "cli_evaluate_single", original)
    calls: list[str] = []

    def wrap(inner):  # noqa: ANN001, ANN202
        def outer(args):  # noqa: ANN001, ANN202
            calls.append("outer")
            return "ran", args

        outer.inner = inner
        return outer

    compat.wrap_cli_evaluate_single(wrap)
    compat.wrap_cli_evaluate_single(wrap)  # a second install wraps the original, not the first wrapper
    assert lmms_main.cli_evaluate_single.inner is original
    assert lmms_main.cli_evaluate_single(1) == ("ran", 1) and calls == ["outer"]
