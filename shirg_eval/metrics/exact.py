"""Exact match after light normalisation (case, surrounding/collapsed whitespace, trailing dots)."""

from __future__ import annotations

from collections.abc import Iterable


def normalise_answer(text: str) -> str:
    text = " ".join(str(text).strip().lower().split())
    stripped = text.rstrip(".").rstrip()
    return stripped if stripped else text


def exact_match(prediction: str, answers: Iterable[str] | str) -> float:
    """1.0 if the normalised prediction equals any normalised answer, else 0.0."""
    if isinstance(answers, str):
        answers = [answers]
    pred = normalise_answer(prediction)
    return 1.0 if any(pred == normalise_answer(a) for a in answers) else 0.0
