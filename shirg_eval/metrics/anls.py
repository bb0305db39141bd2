"""ANLS (Average Normalised Levenshtein Similarity), the DocVQA metric.

Per answer: ``NL = lev(p, a) / max(len(p), len(a))`` over lowercased, whitespace-normalised strings; the
score is ``1 - NL`` if ``NL < threshold`` else 0, maximised over the gold answers (Biten et al., 2019).
lmms-eval zeroes scores with ``1 - NL < threshold`` instead, which differs only at exactly ``NL == 0.5``
(lmms-eval keeps 0.5, the paper's definition gives 0); we follow the paper.
"""

from __future__ import annotations

from collections.abc import Iterable


def _normalise(text: str) -> str:
    return " ".join(str(text).strip().lower().split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalised_levenshtein(prediction: str, answer: str) -> float:
    p, a = _normalise(prediction), _normalise(answer)
    longest = max(len(p), len(a))
    return 0.0 if longest == 0 else levenshtein(p, a) / longest


def anls(prediction: str, answers: Iterable[str] | str, threshold: float = 0.5) -> float:
    """ANLS of one prediction against its gold answers (a single string is one answer)."""
    if isinstance(answers, str):
        answers = [answers]
    best = 0.0
    for answer in answers:
        nl = normalised_levenshtein(prediction, answer)
        if nl < threshold:
            best = max(best, 1.0 - nl)
    return best
