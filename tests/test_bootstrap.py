"""Paired bootstrap: zero delta for identical runs, coverage of a constructed shift, refusal on different docs."""

from __future__ import annotations

import numpy as np
import pytest

from shirg_eval.metrics import bootstrap as bs


def _run(values: np.ndarray) -> dict[str, float]:
    return {f"doc-{i:03d}": float(v) for i, v in enumerate(values)}


def test_identical_runs_give_zero_delta_and_zero_width() -> None:
    a = _run(np.random.default_rng(1).integers(0, 2, 200))
    iv = bs.paired_bootstrap(a, dict(a), n_boot=500, seed=0)
    assert (iv.estimate, iv.low, iv.high, iv.n) == (0.0, 0.0, 0.0, 200)


def test_constructed_shift_is_covered() -> None:
    # B = A, except 30 of the documents A got wrong are right in B: the true paired delta is exactly 30/200
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2, 200).astype(float)
    b = a.copy()
    wrong = np.flatnonzero(a == 0)
    b[rng.choice(wrong, size=30, replace=False)] = 1.0
    iv = bs.paired_bootstrap(_run(a), _run(b), n_boot=2000, seed=0)
    assert iv.estimate == pytest.approx(0.15)
    assert iv.low <= 0.15 <= iv.high
    assert iv.low > 0  # 30 one-sided flips in 200 are not noise
    # unpaired resampling would be far wider: pairing is what makes small effects visible
    assert iv.high - iv.low < 0.12


def test_shift_on_a_fraction_with_noise_covered_in_most_seeds() -> None:
    # population effect +0.1 on a random 50% of docs (scores in [0,1]); the 95% interval should cover it ~95%
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        a = rng.uniform(0, 0.8, 200)
        b = a + np.where(rng.random(200) < 0.5, 0.2, 0.0)  # mean effect 0.1
        iv = bs.paired_bootstrap(_run(a), _run(b), n_boot=1000, seed=seed)
        hits += iv.low <= 0.1 <= iv.high
    assert hits >= 17


def test_deterministic_by_seed() -> None:
    rng = np.random.default_rng(3)
    a, b = _run(rng.random(50)), _run(rng.random(50))
    assert bs.paired_bootstrap(a, b, 300, seed=7) == bs.paired_bootstrap(a, b, 300, seed=7)
    assert bs.paired_bootstrap(a, b, 300, seed=7) != bs.paired_bootstrap(a, b, 300, seed=8)


def test_pairing_ignores_order() -> None:
    a = _run(np.arange(10) % 2)
    b = dict(reversed(list(_run(np.ones(10)).items())))
    assert bs.paired_bootstrap(a, b, 200, seed=0).estimate == pytest.approx(0.5)


def test_different_doc_sets_are_refused() -> None:
    a = _run(np.ones(10))
    b = {k: v for k, v in a.items() if k != "doc-003"}
    b["doc-099"] = 1.0
    b["doc-098"] = 1.0
    with pytest.raises(bs.DocSetMismatch) as err:
        bs.paired_bootstrap(a, b, names=("lavida (chartqa_200)", "pool_k (chartqa_200)"))
    msg = str(err.value)
    assert "lavida (chartqa_200)" in msg and "pool_k (chartqa_200)" in msg
    assert "10 vs 11 ids" in msg and "1 only in lavida" in msg and "2 only in pool_k" in msg


def test_mean_ci_and_wilson() -> None:
    iv = bs.bootstrap_mean_ci([1.0] * 6 + [0.0] * 4, n_boot=2000, seed=0)
    assert iv.estimate == pytest.approx(0.6) and iv.low < 0.6 < iv.high
    w = bs.wilson_interval(6, 10)
    assert (round(w.low, 4), round(w.high, 4)) == (0.3127, 0.8318)


def test_corpus_cider_identical_and_shift() -> None:
    refs = ["total sales in 1990", "the blue bar", "forty five", "march 2001", "acme corp", "page four"] * 3
    a = {f"d{i}": bs.cider_item({"pred": r, "refs": [r]}) for i, r in enumerate(refs)}
    iv = bs.paired_bootstrap_corpus(a, dict(a), bs.cider_score, n_boot=50, seed=0)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)
    worse = {k: bs.cider_item({"pred": "unknown", "refs": [r]}) for k, r in zip(a, refs, strict=True)}
    iv = bs.paired_bootstrap_corpus(a, worse, bs.cider_score, n_boot=50, seed=0)
    assert iv.estimate < 0 and iv.high < 0
    assert bs.cider_item({"pred": "x", "refs": []}) is None and bs.cider_item(0.5) is None
