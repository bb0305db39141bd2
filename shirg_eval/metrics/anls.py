"""ANLS (Average Normalised Levenshtein Similarity), the DocVQA metric, as the official scorer computes it.

:func:`anls` calls lmms-eval 0.7.3's ``lmms_eval.api.metrics.anls`` (the ``docvqa_val`` metric), which follows
the official DocVQA evaluation (Biten et al., 2019; the RRC scorer): per gold answer, the Levenshtein distance
between the lower-cased, whitespace-collapsed strings, divided by the length of the longer *original* string
(``max(len(answer.upper()), len(prediction.upper()))``, surrounding and repeated spaces included); the score is
``1 - min(NL)`` over the answers, set to 0 when it is below the threshold 0.5. At exactly ``NL == 0.5`` the
score is 0.5 (kept), not 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any


@cache
def _lmms_eval_anls() -> Callable[..., dict[str, Any]]:
    from lmms_eval.api.metrics import anls as reference

    return reference


def anls(prediction: str, answers: Iterable[str] | str, threshold: float = 0.5) -> float:
    """ANLS of one prediction against its gold answers (a single string is one answer; none scores 0)."""
    refs = [answers] if isinstance(answers, str) else [str(a) for a in answers]
    if not refs:
        return 0.0
    return float(_lmms_eval_anls()(refs, [str(prediction)], thresh_hold=threshold)["anls"])
