"""ChartQA relaxed accuracy (pix2struct semantics, with a few documented normalisations).

pix2struct (``metrics.relaxed_correctness``) parses both strings with ``float()``; if both parse and the target
is non-zero the answer is correct when ``|pred - target| / |target| <= 5%``, otherwise it falls back to a
case-insensitive string comparison. We keep that rule and add normalisations for pitfalls reported upstream:

* whitespace is stripped and trailing dots are dropped (``"42."`` == ``"42"``; models often end with a period);
* thousands separators are removed (``"1,234"`` == ``1234``) when the commas sit at proper 3-digit positions;
* ``%`` is stripped from both sides before comparing numbers. pix2struct divides a ``%`` value by 100, so
  ``"2%"`` vs ``"2"`` is wrong there; ChartQA gold answers usually omit the sign while models add it, and
  the chart unit is the same either way, so we treat them as equal;
* a zero target is compared numerically for exact equality (a relative tolerance is undefined at 0;
  pix2struct falls back to strings, which rejects ``"0.0"`` vs ``"0"``);
* an error of exactly 5% counts despite float rounding (tiny epsilon);
* non-finite parses (``"nan"``, ``"inf"``) are not numbers.

Years are numbers, as in pix2struct: ``"2015"`` vs ``"2016"`` is within 5% and therefore counts as correct.
This over-credits year answers, but following pix2struct keeps scores comparable with published ChartQA
numbers (including LaViDa's).
"""

from __future__ import annotations

import math
import re

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


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


def relaxed_correctness(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """True when ``prediction`` matches ``target`` under ChartQA's relaxed accuracy (see module doc)."""
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
