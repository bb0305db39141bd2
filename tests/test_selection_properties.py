"""Property tests (hypothesis) for the selection rules over random grids, scores and K."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shirg_eval.selection as sel
from shirg_eval.selection.base import coverage_topk, n_regions, region_ids
from shirg_eval.selection.selectors.pool_k import pooled_shape

SETTINGS = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# Random shapes plus the ones that matter in practice (non-square, non-divisible, 672 and 384 views).
grids = st.one_of(
    st.tuples(st.integers(1, 20), st.integers(1, 20)),
    st.sampled_from([(5, 7), (7, 5), (48, 48), (27, 27), (1, 1), (3, 50)]),
)


@st.composite
def problems(draw: st.DrawFn, coverage: bool = True) -> tuple[tuple[int, int], int, int, int]:
    """(grid, region, k, seed) with k inside the valid range."""
    grid = draw(grids)
    region = draw(st.integers(1, 6))
    n = grid[0] * grid[1]
    lo = n_regions(grid, region) if coverage else 1
    k = draw(st.integers(lo, n))
    seed = draw(st.integers(0, 2**16))
    return grid, region, k, seed


def _tokens(grid: tuple[int, int], seed: int, d: int = 6, b: int = 1) -> torch.Tensor:
    return torch.randn(b, grid[0] * grid[1], d, generator=torch.Generator().manual_seed(seed))


def _check_indices(idx: torch.Tensor, k: int, grid: tuple[int, int], region: int | None) -> None:
    n = grid[0] * grid[1]
    assert idx.dtype == torch.long and idx.shape == (k,)
    assert torch.all(idx[1:] > idx[:-1])  # ascending => distinct
    assert int(idx.min()) >= 0 and int(idx.max()) < n
    if region is not None:
        covered = torch.unique(region_ids(grid, region)[idx])
        assert covered.numel() == n_regions(grid, region)


@SETTINGS
@given(problems(), st.sampled_from(["shirg_fixed", "random_k"]), st.booleans())
def test_coverage_selectors_properties(
    prob: tuple[tuple[int, int], int, int, int], name: str, with_text: bool
) -> None:
    grid, region, k, seed = prob
    x = _tokens(grid, seed)
    q = torch.randn(1, 3, 6, generator=torch.Generator().manual_seed(seed + 1)) if with_text else None
    s = sel.build_selector(name, k=k, region=region)
    res = s.select(x, grid, q, generator=torch.Generator().manual_seed(seed))
    idx = res.kept_indices[0]
    _check_indices(idx, k, grid, region)
    scaffold = res.info["n_scaffold"]
    assert res.tokens[0].shape == (k + scaffold, 6)
    torch.testing.assert_close(res.tokens[0][:k], x[0, idx])
    # determinism under the same seed / inputs
    again = s.select(x, grid, q, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(again.kept_indices[0], idx)
    torch.testing.assert_close(again.tokens[0], res.tokens[0])


@SETTINGS
@given(grids, st.integers(1, 6), st.data())
def test_coverage_topk_arbitrary_scores(grid: tuple[int, int], region: int, data: st.DataObject) -> None:
    n = grid[0] * grid[1]
    # small integer-valued scores -> many ties, exercising the tie-break
    scores = torch.tensor(
        data.draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), dtype=torch.float32
    )
    k = data.draw(st.integers(n_regions(grid, region), n))
    idx = coverage_topk(scores, grid, k, region, coverage=True)
    _check_indices(idx, k, grid, region)
    assert torch.equal(idx, coverage_topk(scores, grid, k, region, coverage=True))
    # each region's representative is one of its best tokens
    rid = region_ids(grid, region)
    for r in range(n_regions(grid, region)):
        in_r = rid == r
        assert scores[idx][rid[idx] == r].max() == scores[in_r].max()
    # the fill never skips a better token: no dropped token beats the worst kept non-winner...
    kept = torch.zeros(n, dtype=torch.bool)
    kept[idx] = True
    if k > n_regions(grid, region) and (~kept).any():
        assert (
            scores[~kept].max() <= scores[kept].sort(descending=True).values[k - n_regions(grid, region) - 1]
        )


@SETTINGS
@given(problems(coverage=False))
def test_plain_topk_without_coverage(prob: tuple[tuple[int, int], int, int, int]) -> None:
    grid, region, k, seed = prob
    x = _tokens(grid, seed)
    res = sel.build_selector("shirg_fixed", k=k, region=region, coverage=False, scaffold=False).select(
        x, grid
    )
    idx = res.kept_indices[0]
    _check_indices(idx, k, grid, None)
    scores = sel.relevance_score(x)[0]
    dropped = torch.ones(scores.numel(), dtype=torch.bool)
    dropped[idx] = False
    if dropped.any():
        assert scores[dropped].max() <= scores[idx].min()


@SETTINGS
@given(grids, st.integers(1, 6), st.integers(0, 5))
def test_k_out_of_range_errors(grid: tuple[int, int], region: int, extra: int) -> None:
    n = grid[0] * grid[1]
    x = _tokens(grid, 0)
    for name in ("shirg_fixed", "random_k"):
        with pytest.raises(ValueError, match=rf"k={n + 1 + extra}"):
            sel.build_selector(name, k=n + 1 + extra, region=region).select(x, grid)
        nreg = n_regions(grid, region)
        if nreg > 1:
            with pytest.raises(ValueError, match=rf"k={nreg - 1}\b.*{nreg}"):
                sel.build_selector(name, k=nreg - 1, region=region).select(x, grid)
    with pytest.raises(ValueError, match=rf"k={n + 1 + extra}"):
        sel.build_selector("pool_k", k=n + 1 + extra).select(x, grid)


@SETTINGS
@given(grids, st.data())
def test_pool_k_count(grid: tuple[int, int], data: st.DataObject) -> None:
    n = grid[0] * grid[1]
    k = data.draw(st.integers(1, n))
    h, w = pooled_shape(k, grid)
    fits = any(k % a == 0 and k // a <= grid[1] for a in range(1, grid[0] + 1))
    if fits:
        assert h * w == k
    assert h <= grid[0] and w <= grid[1]
    res = sel.build_selector("pool_k", k=k).select(_tokens(grid, 1), grid)
    assert res.tokens[0].shape[0] == h * w == res.info["k_effective"]
    _check_indices(res.kept_indices[0], h * w, grid, None)


@SETTINGS
@given(grids, st.integers(0, 2**16), st.floats(0.0, 1.0), st.booleans(), st.sampled_from(["one_hop", "kept_components"]))
def test_shirg_original_properties(grid: tuple[int, int], seed: int, thr: float, scaffold: bool, merge: str) -> None:
    n = grid[0] * grid[1]
    x = _tokens(grid, seed, b=2)
    ks = (max(1, n // 4), max(1, n // 4) + 1, max(1, n // 4) + 2)
    s = sel.build_selector(
        "shirg_original", k_choices=ks, gate_thresholds=(0.5, 0.9), merge_threshold=thr, scaffold=scaffold,
        merge=merge,
    )
    res = s.select(x, grid)
    n_scaffold = math.ceil(grid[0] / 4) * math.ceil(grid[1] / 4) if scaffold else 0
    assert res.info["n_scaffold"] == n_scaffold
    for b in range(2):
        k = res.info["k"][b]
        kept = res.kept_indices[b]
        _check_indices(kept, kept.numel(), grid, None)
        if merge == "one_hop":
            # K units (never more than the units there are), each covering 1-3 positions
            units = n - res.info["n_merged_away"][b]
            assert k == min(units, k) and k <= min(n, max(ks)) and k <= kept.numel() <= 3 * k
            assert res.tokens[b].shape == (k + n_scaffold, 6)
        else:
            assert k in [min(n, c) for c in ks] and kept.numel() == k
            g = k - res.info["n_merged_away"][b]
            assert 1 <= g <= k and res.tokens[b].shape == (g + n_scaffold, 6)
    again = s.select(x, grid)
    assert all(torch.equal(a, b) for a, b in zip(again.kept_indices, res.kept_indices, strict=True))


@SETTINGS
@given(problems())
def test_gradients_only_at_kept_indices(prob: tuple[tuple[int, int], int, int, int]) -> None:
    grid, region, k, seed = prob
    x = _tokens(grid, seed).requires_grad_()
    res = sel.build_selector("shirg_fixed", k=k, region=region).select(x, grid)
    res.tokens[0][:k].sum().backward()
    nonzero = (x.grad[0] != 0).any(-1).nonzero().flatten()
    assert torch.equal(nonzero, res.kept_indices[0])
