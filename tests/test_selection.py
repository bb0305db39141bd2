"""Unit tests for the selector registry, scoring and the built-in selectors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import shirg_eval.selection as sel
from shirg_eval.selection import registry
from shirg_eval.selection.base import SelectionResult, Selector, coverage_topk, n_regions, scaffold_tokens
from shirg_eval.selection.scoring import relevance_score, saliency, standardize, text_relevance
from shirg_eval.selection.selectors.pool_k import pooled_shape
from shirg_eval.selection.selectors.shirg_original import choose_k, gate_values, merge_groups, one_hop_units

BUILTIN = ["full", "pool_k", "random_k", "shirg_fixed", "shirg_original"]


def _tokens(b: int, h: int, w: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h * w, d, generator=g)


# -- registry --------------------------------------------------------------------------------------
def test_builtin_selectors_registered() -> None:
    assert set(BUILTIN) <= set(sel.available_selectors())
    assert sel.available_selectors() == sorted(sel.available_selectors())
    for name in BUILTIN:
        cls = sel.get_selector(name)
        assert issubclass(cls, Selector) and cls.name == name
        assert sel.build_selector(name).name == name


def test_unknown_selector_lists_known_names() -> None:
    with pytest.raises(sel.UnknownSelectorError) as exc:
        sel.get_selector("shirg_nope")
    assert isinstance(exc.value, ValueError)
    for name in BUILTIN:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="shirg_fixed"):
        sel.build_selector("nope")


def test_unknown_parameter_is_value_error() -> None:
    with pytest.raises(ValueError, match="kk"):
        sel.build_selector("shirg_fixed", kk=3)


def test_register_duplicate_name_rejected() -> None:
    @sel.register_selector("_test_dummy")
    class Dummy(Selector):
        pass

    try:
        assert sel.get_selector("_test_dummy") is Dummy and Dummy.name == "_test_dummy"

        class Other(Selector):
            pass

        with pytest.raises(ValueError, match="already registered"):
            sel.register_selector("_test_dummy")(Other)
    finally:
        registry._REGISTRY.pop("_test_dummy", None)


@pytest.mark.parametrize(
    "name,params,param",
    [
        ("shirg_fixed", {"k": 0}, "k"),
        ("shirg_fixed", {"k": True}, "k"),
        ("shirg_fixed", {"k": 7.5}, "k"),
        ("shirg_fixed", {"region": 0}, "region"),
        ("shirg_fixed", {"alpha": 1.5}, "alpha"),
        ("shirg_fixed", {"scaffold": 2}, "scaffold"),
        ("shirg_fixed", {"coverage": "yes"}, "coverage"),
        ("random_k", {"seed": -1}, "seed"),
        ("pool_k", {"k": -4}, "k"),
        ("shirg_original", {"merge_threshold": -0.1}, "merge_threshold"),
        ("shirg_original", {"k_choices": (768, 512, 1024)}, "k_choices"),
        ("shirg_original", {"gate_thresholds": (0.5,)}, "gate_thresholds"),
        ("shirg_original", {"gate_thresholds": (0.6, 0.3)}, "gate_thresholds"),
        ("shirg_original", {"merge": "transitive"}, "merge"),
        ("shirg_original", {"merge_features": "max"}, "merge_features"),
    ],
)
def test_bad_params_name_the_param(name: str, params: dict, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        sel.build_selector(name, **params)


def test_scaffold_accepts_int_count() -> None:
    assert sel.build_selector("shirg_fixed", scaffold=0).scaffold is False
    assert sel.build_selector("shirg_fixed", scaffold=1).scaffold is True


def test_input_shape_checks() -> None:
    s = sel.build_selector("shirg_fixed", k=4)
    with pytest.raises(ValueError, match="grid_hw"):
        s.select(_tokens(1, 4, 4), (4, 5))
    with pytest.raises(ValueError, match="text_embeds"):
        s.select(_tokens(1, 4, 4, d=16), (4, 4), torch.zeros(1, 3, 8))


# -- scoring ---------------------------------------------------------------------------------------
def test_text_relevance_is_max_cosine() -> None:
    x = _tokens(1, 3, 3, d=8)
    q = torch.stack([x[0, 4] * 3.0, torch.randn(8)])[None]  # token 4 (scaled) is a question token
    rel = text_relevance(x, q)
    assert rel.shape == (1, 9)
    assert rel[0, 4] == pytest.approx(1.0, abs=1e-5)
    ref = F.cosine_similarity(x[0, :, None, :], q[0, None, :, :], dim=-1).amax(-1)
    torch.testing.assert_close(rel[0], ref, atol=1e-5, rtol=1e-5)


def test_saliency_and_standardize() -> None:
    x = _tokens(2, 4, 4, d=32)
    torch.testing.assert_close(saliency(x), x.var(-1, unbiased=False), atol=1e-5, rtol=1e-4)
    z = standardize(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert z[0].mean().abs() < 1e-6 and z[0].std(unbiased=False) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(z[1], torch.zeros(3))  # std = 0 guarded


def test_relevance_score_without_text_is_saliency() -> None:
    x = _tokens(1, 5, 5)
    expect = standardize(saliency(x))
    torch.testing.assert_close(relevance_score(x, None), expect)
    torch.testing.assert_close(relevance_score(x, torch.zeros(1, 0, 16)), expect)
    q = torch.randn(1, 4, 16)
    mixed = 0.7 * standardize(text_relevance(x, q)) + 0.3 * expect
    torch.testing.assert_close(relevance_score(x, q, alpha=0.7), mixed)


def test_scores_carry_no_grad() -> None:
    x = _tokens(1, 4, 4).requires_grad_()
    assert not relevance_score(x, torch.randn(1, 2, 16)).requires_grad


# -- shirg_fixed -----------------------------------------------------------------------------------
def test_shirg_fixed_48x48_is_912_tokens() -> None:
    x = _tokens(1, 48, 48, d=8)
    q = torch.randn(1, 32, 8)
    res = sel.build_selector("shirg_fixed", k=768).select(x, (48, 48), q)
    assert isinstance(res, SelectionResult)
    assert res.tokens[0].shape == (912, 8)
    assert res.kept_indices[0].shape == (768,)
    assert res.info["n_scaffold"] == 144 and res.info["k"] == 768
    res2 = sel.build_selector("shirg_fixed", k=768, scaffold=False).select(x, (48, 48), q)
    assert res2.tokens[0].shape == (768, 8)


@pytest.mark.parametrize("grid", [(48, 48), (5, 7), (27, 27), (2, 3)])
def test_scaffold_matches_avg_pool2d_ceil_mode(grid: tuple[int, int]) -> None:
    h, w = grid
    x = _tokens(2, h, w, d=6)
    ref = F.avg_pool2d(x.transpose(1, 2).reshape(2, 6, h, w), 4, 4, ceil_mode=True).flatten(2).transpose(1, 2)
    got = scaffold_tokens(x, grid, 4)
    assert got.shape == (2, n_regions(grid, 4), 6)
    torch.testing.assert_close(got, ref)


def test_shirg_fixed_scaffold_is_appended_after_selection() -> None:
    x = _tokens(1, 8, 8)
    res = sel.build_selector("shirg_fixed", k=10).select(x, (8, 8))
    k = len(res.kept_indices[0])
    torch.testing.assert_close(res.tokens[0][:k], x[0, res.kept_indices[0]])
    torch.testing.assert_close(res.tokens[0][k:], scaffold_tokens(x, (8, 8), 4)[0])


def test_shirg_fixed_k_range_errors() -> None:
    x = _tokens(1, 48, 48, d=4)
    with pytest.raises(ValueError, match=r"k=100.*144"):
        sel.build_selector("shirg_fixed", k=100).select(x, (48, 48))
    with pytest.raises(ValueError, match=r"k=3000.*48x48"):
        sel.build_selector("shirg_fixed", k=3000).select(x, (48, 48))
    # without coverage a small K is fine
    res = sel.build_selector("shirg_fixed", k=100, coverage=False, scaffold=False).select(x, (48, 48))
    assert res.tokens[0].shape[0] == 100


def test_shirg_fixed_prefers_text_relevant_tokens() -> None:
    x = _tokens(1, 8, 8, d=32)
    q = x[:, [13, 50]].clone()  # the question "mentions" tokens 13 and 50
    res = sel.build_selector("shirg_fixed", k=4, coverage=False, alpha=1.0, scaffold=False).select(
        x, (8, 8), q
    )
    assert {13, 50} <= set(res.kept_indices[0].tolist())


def test_output_tokens_in_raster_order() -> None:
    # Channel 0 encodes the grid index, so the emitted order is visible in the features.
    h, w = 12, 9
    x = _tokens(1, h, w, d=8)
    x[0, :, 0] = torch.arange(h * w, dtype=torch.float32)
    q = torch.randn(1, 5, 8)
    for name, params in [
        ("shirg_fixed", {"k": 30, "scaffold": False}),
        ("random_k", {"k": 30}),
        (
            "shirg_original",
            {"k_choices": (40,), "gate_thresholds": (), "merge_threshold": 0.0, "scaffold": False},
        ),
    ]:
        res = sel.build_selector(name, **params).select(x, (h, w), q)
        emitted = res.tokens[0][:, 0]
        assert torch.equal(emitted, res.kept_indices[0].float()), name
        assert torch.all(emitted[1:] > emitted[:-1]), name


def test_gradients_reach_only_kept_tokens() -> None:
    x = _tokens(1, 8, 8).requires_grad_()
    res = sel.build_selector("shirg_fixed", k=12).select(x, (8, 8), torch.randn(1, 3, 16))
    k = len(res.kept_indices[0])
    res.tokens[0][:k].sum().backward()  # selected part only
    nonzero = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten()
    assert torch.equal(nonzero, res.kept_indices[0])
    # with the scaffold included every token gets gradient
    x.grad = None
    res = sel.build_selector("shirg_fixed", k=12).select(x, (8, 8))
    sum(t.sum() for t in res.tokens).backward()
    assert (x.grad[0].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("name", BUILTIN)
def test_every_selector_is_differentiable(name: str) -> None:
    params = {"k": 16} if name in ("shirg_fixed", "random_k", "pool_k") else {}
    if name == "shirg_original":
        params = {"k_choices": (16,), "gate_thresholds": ()}
    x = _tokens(1, 8, 8).requires_grad_()
    res = sel.build_selector(name, **params).select(x, (8, 8))
    sum(t.sum() for t in res.tokens).backward()
    assert x.grad is not None
    assert (x.grad[0, res.kept_indices[0]].abs().sum(-1) > 0).all()


def test_batch_selection_is_per_image() -> None:
    x = _tokens(3, 9, 10)
    q = torch.randn(3, 4, 16)
    for name, params in [
        ("shirg_fixed", {"k": 20}),
        ("shirg_original", {"k_choices": (10, 30), "gate_thresholds": (0.9,)}),
    ]:
        s = sel.build_selector(name, **params)
        batch = s.select(x, (9, 10), q)
        for b in range(3):
            single = s.select(x[b : b + 1], (9, 10), q[b : b + 1])
            assert torch.equal(batch.kept_indices[b], single.kept_indices[0])
            torch.testing.assert_close(batch.tokens[b], single.tokens[0])


@pytest.mark.parametrize("name", BUILTIN)
def test_info_is_json_able(name: str) -> None:
    res = sel.build_selector(name).select(_tokens(2, 48, 48, d=4), (48, 48), torch.randn(2, 3, 4))
    json.dumps(res.info)
    json.dumps(sel.build_selector(name).params)
    assert res.info["n_tokens"] == [t.shape[0] for t in res.tokens]


def test_bfloat16_tokens() -> None:
    x = _tokens(1, 16, 16).bfloat16()
    res = sel.build_selector("shirg_fixed", k=40).select(x, (16, 16), torch.randn(1, 3, 16).bfloat16())
    assert res.tokens[0].dtype == torch.bfloat16 and res.tokens[0].shape == (40 + 16, 16)


# -- full / pool_k / random_k ----------------------------------------------------------------------
def test_full_keeps_everything() -> None:
    x = _tokens(2, 5, 7)
    res = sel.build_selector("full").select(x, (5, 7))
    assert torch.equal(res.tokens[1], x[1]) and torch.equal(res.kept_indices[0], torch.arange(35))


def test_pool_k_exact_count_and_shape() -> None:
    assert pooled_shape(768, (48, 48)) == (24, 32)
    assert pooled_shape(1024, (48, 48)) == (32, 32)
    assert pooled_shape(729, (27, 27)) == (27, 27)
    x = _tokens(1, 48, 48, d=4)
    res = sel.build_selector("pool_k", k=768).select(x, (48, 48))
    assert res.tokens[0].shape == (768, 4) and res.info["pooled_hw"] == [24, 32]
    ref = F.adaptive_avg_pool2d(x.transpose(1, 2).reshape(1, 4, 48, 48), (24, 32)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(res.tokens[0], ref[0])
    kept = res.kept_indices[0]
    assert kept.shape == (768,) and torch.all(kept[1:] > kept[:-1])
    with pytest.raises(ValueError, match="k=3000"):
        sel.build_selector("pool_k", k=3000).select(x, (48, 48))


def test_random_k_seeded() -> None:
    x = _tokens(1, 12, 12)
    a = sel.build_selector("random_k", k=20, seed=3).select(x, (12, 12)).kept_indices[0]
    b = sel.build_selector("random_k", k=20, seed=3).select(x, (12, 12)).kept_indices[0]
    c = sel.build_selector("random_k", k=20, seed=4).select(x, (12, 12)).kept_indices[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    s = sel.build_selector("random_k", k=20)
    g1 = s.select(x, (12, 12), generator=torch.Generator().manual_seed(9)).kept_indices[0]
    g2 = s.select(x, (12, 12), generator=torch.Generator().manual_seed(9)).kept_indices[0]
    assert torch.equal(g1, g2)


# -- shirg_original --------------------------------------------------------------------------------
def test_shirg_original_default_48x48() -> None:
    x = _tokens(1, 48, 48, d=16)
    res = sel.build_selector("shirg_original").select(x, (48, 48), torch.randn(1, 8, 16))
    info = res.info
    assert info["k"][0] in (512, 768, 1024) and info["merge"] == "one_hop"
    # one-hop units hold at most 3 positions, so K units always exist on 48x48: exactly K + 144 tokens
    assert res.tokens[0].shape[0] == info["k"][0] + 144 == info["n_tokens"][0]
    assert info["k"][0] <= len(res.kept_indices[0]) == info["n_kept_positions"][0] <= 3 * info["k"][0]
    assert 0.0 <= info["gate_value"][0] <= 1.0


def test_gate_is_scale_invariant_and_ordered() -> None:
    flat = torch.ones(1, 64, 16) + 0.01 * _tokens(1, 8, 8)  # every token alike
    busy = _tokens(1, 8, 8)  # independent zero-mean tokens
    mid = torch.ones(1, 64, 16) + 0.9 * _tokens(1, 8, 8, seed=1)
    g = gate_values(torch.cat([flat, mid, busy]))
    assert g[0] < 0.01 and g[2] > 0.9 and g[0] < g[1] < g[2]
    torch.testing.assert_close(gate_values(busy * 37.0), gate_values(busy))
    ks = [choose_k(float(v), (512, 768, 1024), (0.35, 0.6)) for v in g]
    assert ks == [512, 768, 1024]


def test_one_hop_units_do_not_chain() -> None:
    # 3x4 grid. The zero-score "snake" {0,1,2,5,9,10} is one connected component, but a one-hop scan in
    # raster order makes p0 absorb only its right neighbour p1; p2 seeds its own unit, p5 absorbs p9 (down).
    scores = [0.0, 0.0, 0.0, 5.0, 9.0, 0.0, 3.0, 5.0, 9.0, 0.0, 0.0, 1.0]
    assert one_hop_units(scores, (3, 4), 0.05) == [0, 0, 1, 2, 3, 4, 5, 2, 3, 4, 6, 7]
    assert one_hop_units(scores, (3, 4), 0.0) == list(range(12))  # a zero threshold merges nothing


def _fixed_scores(selector, scores: list[float]):
    selector.scores = lambda tokens, grid, text: torch.tensor([scores])
    return selector


def test_shirg_original_merges_before_selection() -> None:
    # 2x3 grid, scores [5, 5, 1, 0, 4, 3], K=2. Units (one hop): {0,1} (seed 0), {2}, {3}, {4}, {5}.
    # Best two units: {0,1} (score 5) and {4} (score 4): merging first frees a slot that plain top-2
    # would have spent on position 1.
    x = _tokens(1, 2, 3, d=8)
    scores = [5.0, 5.0, 1.0, 0.0, 4.0, 3.0]
    common = {"k_choices": (2,), "gate_thresholds": (), "scaffold": False}
    res = _fixed_scores(sel.build_selector("shirg_original", **common), scores).select(x, (2, 3))
    assert res.kept_indices[0].tolist() == [0, 1, 4] and res.info["n_merged_away"] == [1]
    torch.testing.assert_close(res.tokens[0], torch.stack([(x[0, 0] + x[0, 1]) / 2, x[0, 4]]))
    seed = _fixed_scores(sel.build_selector("shirg_original", merge_features="seed", **common), scores)
    torch.testing.assert_close(seed.select(x, (2, 3)).tokens[0], x[0, [0, 4]])
    plain = _fixed_scores(sel.build_selector("shirg_original", merge="none", **common), scores)
    assert plain.select(x, (2, 3)).kept_indices[0].tolist() == [0, 1]
    # the earlier variant (option): top-2 first, then kept neighbours merge -> one token for {0, 1}
    comp = _fixed_scores(sel.build_selector("shirg_original", merge="kept_components", **common), scores)
    out = comp.select(x, (2, 3))
    assert out.kept_indices[0].tolist() == [0, 1] and out.tokens[0].shape == (1, 8)
    torch.testing.assert_close(out.tokens[0][0], (x[0, 0] + x[0, 1]) / 2)


def test_shirg_original_without_question_scores_by_token_norm() -> None:
    # the prototype's fallback relevance is the feature magnitude
    x = 0.01 * _tokens(1, 4, 4, d=8)
    x[0, 7] = 10.0 * torch.tensor([1.0, -1.0] * 4)  # large norm and large variance -> still ranked first?
    s = sel.build_selector("shirg_original", k_choices=(1,), gate_thresholds=(), scaffold=False, merge="none")
    z = s.scores(x, (4, 4), None)[0]
    assert int(z.argmax()) == 7  # 0.7 z(norm) outweighs -0.2 z(var)


def test_merge_groups_connected_components() -> None:
    # 3x4 grid, all kept; equal scores inside a snake-shaped component, distinct elsewhere.
    scores = torch.tensor([0.0, 0.0, 0.0, 5.0, 9.0, 7.0, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0])
    kept = torch.arange(12)
    group = merge_groups(kept, scores, (3, 4), 0.05)
    # component {0,1,2,6,10,9,8} via the snake, the rest singletons; groups numbered by smallest index
    assert group.tolist() == [0, 0, 0, 1, 2, 3, 0, 4, 0, 0, 0, 5]
    # only kept positions link: dropping 6 splits the snake
    kept2 = torch.tensor([0, 1, 2, 8, 9, 10])
    assert merge_groups(kept2, scores, (3, 4), 0.05).tolist() == [0, 0, 0, 1, 1, 1]


def test_shirg_original_k_clamped_to_grid() -> None:
    x = _tokens(1, 5, 5)
    res = sel.build_selector("shirg_original", scaffold=False).select(x, (5, 5))
    # K=512 > 25 positions: every unit is kept, so every position is covered
    assert res.info["k"] == [25 - res.info["n_merged_away"][0]] and len(res.kept_indices[0]) == 25
    res = sel.build_selector("shirg_original", scaffold=False, merge="none").select(x, (5, 5))
    assert res.info["k"] == [25] and res.tokens[0].shape[0] == 25


def test_coverage_topk_every_region() -> None:
    scores = torch.zeros(48 * 48)
    scores[:100] = 10.0  # all the "good" tokens are in the top rows
    idx = coverage_topk(scores, (48, 48), 144, 4, coverage=True)
    rid = (idx // 48 // 4) * 12 + (idx % 48) // 4
    assert sorted(rid.tolist()) == list(range(144))
