"""scripts/format_scan.py: what counts as a well-formed answer, and that a scan varies only the prefix length."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "format_scan", Path(__file__).resolve().parents[1] / "scripts" / "format_scan.py")
format_scan = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(format_scan)

REFERENCE = Path(__file__).resolve().parents[1] / "models" / "reference"


@pytest.mark.parametrize("answer, ok", [("7", True), (" 7\n", True), ("77", False), ("", False),
                                        ("7.", False), ("a", False), ("7 7", False)])
def test_an_answer_is_well_formed_only_as_one_digit(answer: str, ok: bool) -> None:
    assert format_scan.well_formed(answer) is ok


def test_each_budget_feeds_the_lm_exactly_that_many_tokens() -> None:
    rows = format_scan.scan(str(REFERENCE), [256, 400], docs=2, split="validation", kinds=("chart",))
    assert [(r["k"], r["set"], r["docs"], r["lm_tokens"]) for r in rows] == [(256, "chart", 2, 256.0),
                                                                           (400, "chart", 2, 400.0)]
    assert all(0.0 <= r["malformed"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0 - r["malformed"] + 1e-9 for r in rows)
