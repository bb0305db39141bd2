"""The field's reducers (VisionZip, DivPrune, DART, HiRED, PruMerge(+), ToMe): exact budgets, order, merging rules
on hand-made tokens, gradients, and the extended selector contract (context, anyres layout)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shirg_eval.selection as sel
from shirg_eval.selection.context import SelectionContext, ViewLayout
from shirg_eval.selection.selectors.hired import apportion
from shirg_eval.selection.selectors.prumerge import iqr_outliers
from shirg_eval.visual.inputs import anyres_order

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
VISION_SIDE = ("visionzip", "divprune", "dart", "hired", "prumerge", "tome")
SELECT_ONLY = ("divprune", "dart", "hired")  # keep positions, no merging: tokens == x[kept]
N_HEADS = 2


def make_context(n: int, seed: int, layout: ViewLayout | None = None, c: int = 8) -> SelectionContext:
    g = torch.Generator().manual_seed(seed)
    attention = {layer: torch.softmax(torch.randn(1, n, generator=g) * 2, dim=-1) for layer in (0, -1)}
    keys = torch.randn(1, n, c, generator=g)
    return SelectionContext(layout or ViewLayout.single(n), attention, keys, N_HEADS)


def multi_view_layout(side: int, cols: int, rows: int, seed: int) -> ViewLayout:
    order = anyres_order(side, (cols, rows))
    g = torch.Generator().manual_seed(seed)
    to_view = torch.randint(1, cols * rows + 1, (side * side,), generator=g)
    return ViewLayout(cols * rows + 1, order // (side * side), side, (cols, rows), to_view)


def run(name: str, x: torch.Tensor, grid: tuple[int, int], k: int, context: SelectionContext, **params):
    selector = sel.build_selector(name, k=k, **params)
    return selector(x, grid, context=context)


grids = st.one_of(
    st.tuples(st.integers(1, 20), st.integers(1, 20)),
    st.sampled_from([(48, 48), (27, 27), (5, 7), (7, 5), (1, 1), (3, 50)]),
)


@SETTINGS
@given(grids, st.data(), st.sampled_from(VISION_SIDE), st.integers(0, 2**16))
def test_exact_budget_and_order_single_view(grid, data, name, seed):
    n = grid[0] * grid[1]
    k = data.draw(st.integers(1, n))
    x = torch.randn(1, n, 6, generator=torch.Generator().manual_seed(seed))
    res = run(name, x, grid, k, make_context(n, seed))
    assert res.tokens[0].shape == (k, 6) and res.n_tokens == [k]
    kept = res.kept_indices[0]
    assert kept.dtype == torch.long and torch.all(kept[1:] > kept[:-1])  # raster order, distinct
    assert 0 <= int(kept.min()) and int(kept.max()) < n
    if name in SELECT_ONLY:
        assert kept.numel() == k
        torch.testing.assert_close(res.tokens[0], x[0, kept])
    if name == "visionzip":  # dominant tokens as they are, in raster order, then the contextual means
        torch.testing.assert_close(res.tokens[0][: kept.numel()], x[0, kept])
    again = run(name, x, grid, k, make_context(n, seed))
    assert torch.equal(again.kept_indices[0], kept) and torch.equal(again.tokens[0], res.tokens[0])


@SETTINGS
@given(st.integers(2, 6), st.integers(1, 3), st.integers(1, 3), st.sampled_from(VISION_SIDE), st.data())
def test_exact_budget_multi_view(side, cols, rows, name, data):
    n_views = cols * rows + 1
    n = n_views * side * side
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**16))
    layout = multi_view_layout(side, cols, rows, seed)
    x = torch.randn(1, n, 5, generator=torch.Generator().manual_seed(seed))
    res = run(name, x, (n_views * side, side), k, make_context(n, seed, layout))
    assert res.tokens[0].shape == (k, 5)
    kept = res.kept_indices[0]
    assert torch.all(kept[1:] > kept[:-1])
    if name == "hired":
        budgets = res.info["view_budgets"][0]
        assert sum(budgets) == k and all(0 <= b <= side * side for b in budgets)
        per_view = torch.bincount(layout.view_of[kept], minlength=n_views).tolist()
        assert per_view == budgets


def test_budget_larger_than_tokens_is_a_clear_error():
    x = torch.randn(1, 12, 4)
    for name in VISION_SIDE:
        with pytest.raises(ValueError, match=r"k=13 exceeds the number of visual tokens \(12\)"):
            run(name, x, (3, 4), 13, make_context(12, 0))


def test_selectors_that_need_a_context_say_so():
    x = torch.randn(1, 12, 4)
    for name in ("visionzip", "hired", "prumerge", "tome"):
        with pytest.raises(ValueError, match="run it through VisualPath"):
            sel.build_selector(name, k=4)(x, (3, 4))


# ---------------------------------------------------------------------------------------------- merging rules
def _tokens(n: int, d: int = 3) -> torch.Tensor:
    return torch.arange(n * d, dtype=torch.float32).view(1, n, d) ** 1.5


def test_visionzip_contextual_tokens_are_means_of_their_groups():
    x = _tokens(8)
    attention = torch.tensor([[0.9, 0.0, 0.1, 0.0, 0.0, 0.8, 0.0, 0.0]])
    # remaining after dominant {0, 5}: positions 1 2 3 4 6 7; step 6 // 2 = 3 -> targets 1 and 4.
    # keys (one head): 2 and 7 point like target 1, 3 and 6 like target 4.
    keys = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.9, 0.2], [0.1, 1.0], [0.0, 1.0], [1.0, 1.0], [0.2, 0.9],
                          [1.0, 0.1]]])
    ctx = SelectionContext(ViewLayout.single(8), {-1: attention}, keys, 1)
    res = run("visionzip", x, (2, 4), 4, ctx, contextual_ratio=0.5)
    assert res.kept_indices[0].tolist() == [0, 5]
    expected = torch.stack([x[0, [1, 2, 7]].mean(0), x[0, [4, 3, 6]].mean(0)])
    torch.testing.assert_close(res.tokens[0], torch.cat([x[0, [0, 5]], expected]))


def test_prumerge_merges_every_pruned_token_into_its_nearest_kept_token_by_attention_weight():
    x = _tokens(6)
    attention = torch.tensor([[0.40, 0.05, 0.10, 0.30, 0.05, 0.10]])
    keys = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.2, 1.0], [0.0, 1.0], [1.0, 0.2], [0.1, 0.9]]])
    ctx = SelectionContext(ViewLayout.single(6), {-1: attention}, keys, N_HEADS)
    res = run("prumerge", x, (2, 3), 2, ctx)
    assert res.kept_indices[0].tolist() == [0, 3]  # the two highest attention scores
    w = attention[0]

    def wmean(ids):
        return (x[0, ids] * w[ids, None]).sum(0) / w[ids].sum()

    torch.testing.assert_close(res.tokens[0], torch.stack([wmean([0, 1, 4]), wmean([3, 2, 5])]))


def test_prumerge_outliers_and_plus_spatial_top_up():
    scores = torch.tensor([1.0] * 20 + [50.0, 60.0])
    assert iqr_outliers(scores) == 2
    ctx = SelectionContext(ViewLayout.single(22), {-1: scores[None]}, torch.randn(1, 22, 4), N_HEADS)
    x = torch.randn(1, 22, 3)
    plain = run("prumerge", x, (2, 11), 6, ctx)
    plus = run("prumerge", x, (2, 11), 6, ctx, plus=True)
    assert plain.info["n_outliers"] == plus.info["n_outliers"] == [2]
    assert plain.kept_indices[0].tolist() == [0, 1, 2, 3, 20, 21]  # next-highest (ties: lower index)
    assert plus.kept_indices[0].tolist() == [2, 7, 12, 17, 20, 21]  # evenly spread over the other 20


def test_tome_merges_by_bipartite_matching_into_means():
    x = _tokens(4)
    # A = {0, 2}, B = {1, 3}; 0 is closest to 3, 2 to 1. One round, r = 2.
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1]]])
    ctx = SelectionContext(ViewLayout.single(4), {}, keys, 1)
    res = run("tome", x, (2, 2), 2, ctx)
    assert res.kept_indices[0].tolist() == [1, 3]
    torch.testing.assert_close(res.tokens[0], torch.stack([x[0, [1, 2]].mean(0), x[0, [0, 3]].mean(0)]))
    # several rounds compose to plain means of the original tokens
    x8 = torch.randn(1, 16, 3)
    res = run("tome", x8, (4, 4), 3, make_context(16, 3))
    assert res.info["rounds"] == [3]  # 16 -> 8 -> 4 -> 3


def test_divprune_is_greedy_max_min_and_never_repeats():
    # Three tight clusters: the three most diverse tokens are one per cluster.
    base = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    x = torch.cat([base + 0.01 * i for i in range(3)])[None]
    res = sel.build_selector("divprune", k=3)(x, (3, 3), context=None)
    assert sorted(int(i) % 3 for i in res.kept_indices[0]) == [0, 1, 2]
    flat = torch.ones(1, 9, 4)  # every distance 0: still 9 distinct tokens
    assert res.kept_indices[0].numel() == 3
    assert sel.build_selector("divprune", k=9)(flat, (3, 3)).kept_indices[0].tolist() == list(range(9))


def test_dart_keeps_pivots_and_their_least_duplicated_tokens():
    x = torch.tensor([[[5.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.1, 1.0]]])
    res = sel.build_selector("dart", k=3, pivots=1)(x, (2, 3))
    # pivot: largest L1 norm (token 0); then the two least similar to it: -1,0 (cos -1) and 0,1 (cos 0).
    assert res.kept_indices[0].tolist() == [0, 2, 4]


def test_apportion_exact_with_caps():
    assert apportion(10, [1, 1], [100, 100]) == [5, 5]
    assert apportion(7, [3, 1], [4, 100]) == [4, 3]
    assert apportion(5, [0, 0, 0], [2, 2, 2]) == [2, 2, 1]
    assert sum(apportion(11, [0.3, 0.3, 0.4], [5, 5, 5])) == 11


@pytest.mark.parametrize("name", VISION_SIDE)
def test_gradients_reach_every_merged_token(name):
    n = 24
    x = torch.randn(1, n, 4, requires_grad=True)
    res = run(name, x, (4, 6), 6, make_context(n, 1))
    res.tokens[0].sum().backward()
    touched = (x.grad[0] != 0).any(-1)
    if name in SELECT_ONLY:
        assert touched.nonzero().flatten().tolist() == res.kept_indices[0].tolist()
    else:  # merging methods: every token is kept or merged into a kept one
        assert bool(touched.all()), name


def test_anyres_order_puts_the_tile_map_in_raster_order():
    side, cols, rows = 2, 2, 1
    order = anyres_order(side, (cols, rows)).tolist()
    # views stacked [v0: 0..3, tile0: 4..7, tile1: 8..11]; map row 0 = tile0 row 0, tile1 row 0, ...
    assert order == [0, 1, 2, 3, 4, 5, 8, 9, 6, 7, 10, 11]


def test_trainer_refuses_in_lm_variants_and_takes_vision_side_reducers():
    from pathlib import Path

    from shirg_eval.training.config import ConfigError, load_config

    tiny = Path(__file__).resolve().parents[1] / "configs" / "train" / "tiny_cpu.yaml"
    assert load_config(tiny, {"variant": "visionzip"}).variant == "visionzip"
    with pytest.raises(ConfigError, match="selects inside the LM prefill"):
        load_config(tiny, {"variant": "fastv"})
