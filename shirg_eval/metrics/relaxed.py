"""ChartQA relaxed accuracy: the headline is lmms-eval 0.7.3's own function; a normalised variant rides beside it.

:func:`relaxed_correctness` (metrics ``relaxed_overall`` / ``relaxed_human_split`` / ``relaxed_augmented_split``)
*calls* ``lmms_eval.tasks.chartqa.utils.relaxed_correctness``, the rule behind LaViDa's published 64.6 and every
lmms-eval ChartQA number (Qwen-VL's copy of pix2struct's rule): both strings parsed with ``float()`` (a trailing
``%`` divides by 100); if both parse and the target is non-zero, correct when ``|pred - target| / |target| <= 5%``,
otherwise a case-insensitive exact string match. Consequences kept on purpose for comparability: ``"2%"`` vs
``"2"`` is wrong (0.02 vs 2), ``"12%"`` vs ``"0.12"`` is right, ``"1,000"`` vs ``"1000"`` and ``"42."`` vs ``"42"``
are wrong (string match), a zero target needs the same string (``"0.0"`` vs ``"0"`` is wrong), an exact 5% error
counts only when the float division lands on or below 0.05, and years are numbers (``"2016"`` vs ``"2015"`` is
right).

:func:`relaxed_norm` (metric ``relaxed_norm``, an extra column, never the headline) fixes those pitfalls:
whitespace and trailing dots stripped, thousands separators at proper 3-digit positions removed, ``%`` stripped
from both sides (ChartQA's gold answers usually omit the sign models add), a zero target compared numerically,
an exact 5% error counted despite float rounding, non-finite parses (``nan``, ``inf``) not numbers. Years remain
numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


@cache
def _lmms_eval_relaxed() -> Callable[..., bool]:
    from lmms_eval.tasks.chartqa.utils import relaxed_correctness as reference

    return reference


def relaxed_correctness(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """lmms-eval 0.7.3's ChartQA ``relaxed_correctness`` (see module doc): the headline metric."""
    return bool(_lmms_eval_relaxed()(str(prediction), str(target), max_relative_change=tolerance))


def _normalise_text(text: str) -> str:
    text = " ".join(str(text).strip().split())
    # Strip trailing dots but keep a lone "." (nothing sensible to compare either way).
    stripped = text.rstrip(".").rstrip()
    return (stripped if stripped else text).lower()


def _to_number(text: str) -> float | None:
    """Parse a normalised answer as a number; None if it is not one."""
    s = text.strip()
    if s.endswith("%"):
        s = s[:-1].strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        value = float(s)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def relaxed_norm(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """The normalised relaxed accuracy (see module doc): an extra column beside the lmms-eval headline."""
    pred = _normalise_text(prediction)
    gold = _normalise_text(target)
    pred_num = _to_number(pred)
    gold_num = _to_number(gold)
    if pred_num is not None and gold_num is not None:
        if gold_num == 0.0:
            return pred_num == 0.0
        # The epsilon makes an exactly-5% error count despite float rounding (2.1 / 42 = 0.05000000000000007).
        return abs(pred_num - gold_num) / abs(gold_num) <= tolerance + 1e-12
    return pred == gold
