"""Bootstrap confidence intervals over documents.

With 200 documents per task a few points of accuracy are noise, so every headline number carries a 95% interval
and every comparison is a *paired* bootstrap: documents are resampled with replacement and the same indices are
used for both runs, which cancels per-document difficulty. Intervals are percentile intervals; everything is
deterministic given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .ptb_tokenizer import ptb_tokenize  # the same tokeniser as the task's `cider`

T = TypeVar("T")


class DocSetMismatch(ValueError):
    """Two runs to be compared did not evaluate the same documents."""


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int
    n_boot: int
    method: str


def _percentile(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> Interval:
    """Percentile bootstrap interval of a mean over documents."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, n_boot, "bootstrap")
    means = x[_indices(x.size, n_boot, seed)].mean(axis=1)
    lo, hi = _percentile(means, alpha)
    return Interval(float(x.mean()), lo, hi, int(x.size), n_boot, "bootstrap")


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> Interval:
    """Wilson score interval of a proportion (for 0/1 metrics when no resampling is wanted)."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, "wilson")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, centre - half, centre + half, n, 0, "wilson")


def align(
    baseline: Mapping[str, T], run: Mapping[str, T], name_a: str = "baseline", name_b: str = "run"
) -> list[str]:
    """The shared document ids, in a fixed order; refuses when the two runs cover different documents.

    A delta over different document sets mixes the effect with a change of test set, so it is not computed.
    """
    a, b = set(baseline), set(run)
    if a != b:
        only_a, only_b = len(a - b), len(b - a)
        raise DocSetMismatch(
            f"refusing to compare {name_b} with {name_a}: they cover different documents "
            f"({len(a)} vs {len(b)} ids; {only_a} only in {name_a}, {only_b} only in {name_b}). "
            "Re-run both on the same documents (same task and --limit)."
        )
    return sorted(a)


def paired_bootstrap(
    baseline: Mapping[str, float],
    run: Mapping[str, float],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    names: tuple[str, str] = ("baseline", "run"),
) -> Interval:
    """Mean of ``run - baseline`` over paired documents, with a percentile interval."""
    ids = align(baseline, run, *names)
    if not ids:
        return Interval(math.nan, math.nan, math.nan, 0, n_boot, "paired bootstrap")
    d = np.array([run[i] - baseline[i] for i in ids], dtype=float)
    stats = d[_indices(d.size, n_boot, seed)].mean(axis=1)
    lo, hi = _percentile(stats, alpha)
    return Interval(float(d.mean()), lo, hi, int(d.size), n_boot, "paired bootstrap")


def paired_bootstrap_corpus(
    baseline: Mapping[str, T],
    run: Mapping[str, T],
    score: Callable[[list[T]], float],
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    names: tuple[str, str] = ("baseline", "run"),
) -> Interval:
    """Paired bootstrap of a corpus-level score difference (e.g. CIDEr): the score is recomputed per resample."""
    ids = align(baseline, run, *names)
    if not ids:
        return Interval(math.nan, math.nan, math.nan, 0, n_boot, "paired bootstrap")
    a = [baseline[i] for i in ids]
    b = [run[i] for i in ids]
    est = score(b) - score(a)
    stats = np.array(
        [score([b[j] for j in idx]) - score([a[j] for j in idx]) for idx in _indices(len(ids), n_boot, seed)]
    )
    lo, hi = _percentile(stats, alpha)
    return Interval(float(est), lo, hi, len(ids), n_boot, "paired bootstrap")


# ---- CIDEr (corpus level) ---------------------------------------------------------------------------

def cider_item(value: Any) -> tuple[Any, list[Any]] | None:
    """Pre-cook one sample's ``{"pred": str, "refs": [str]}`` into n-gram counts (None when unusable)."""
    from pycocoevalcap.cider.cider_scorer import cook_refs, cook_test

    if not isinstance(value, dict):
        return None
    pred = value.get("pred", value.get("prediction"))
    refs = value.get("refs", value.get("references", value.get("answers")))
    if isinstance(refs, str):
        refs = [refs]
    if pred is None or not refs:
        return None
    return cook_test(ptb_tokenize(pred)), cook_refs([ptb_tokenize(r) for r in refs])


def cider_score(items: list[tuple[Any, list[Any]]]) -> float:
    """Corpus CIDEr-D (pycocoevalcap, raw scale: 1.0 == 100 in papers) of pre-cooked items."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    if not items:
        return math.nan
    scorer = CiderScorer(n=4, sigma=6.0)
    scorer.ctest = [t for t, _ in items]
    scorer.crefs = [r for _, r in items]
    value, _ = scorer.compute_score()
    return float(value)
