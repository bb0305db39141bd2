"""The reducers on the tiny LaViDa: attention probes against a brute-force eager computation, every method through
``VisualPath`` (672 px and anyres) with exact budgets, order and gradients, and FastV inside the LM prefill."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.prompting import build_prompt_ids
from shirg_eval.model.sampler import GenerationConfig, generate
from shirg_eval.model.tower_probe import TowerProbe
from shirg_eval.pipeline import ShirgPipeline
from shirg_eval.selection.selectors.fastv import fastv_prefill
from shirg_eval.visual.inputs import anyres_layout, anyres_order
from shirg_eval.visual.path import VisualPath

REDUCERS = ("visionzip", "divprune", "dart", "hired", "prumerge", "prumerge_plus", "tome")
QUESTION = "What is the highest value?"


@pytest.fixture(scope="module")
def chart() -> Image.Image:
    image = Image.new("RGB", (640, 480), "white")
    for i, h in enumerate([100, 300, 200, 400]):
        image.paste((40 * i, 90, 200), (60 + 140 * i, 460 - h, 140 + 140 * i, 460))
    return image


@pytest.fixture(scope="module")
def eager_tower(tiny_model):
    tower = copy.deepcopy(tiny_model.vision_tower)
    tower.set_attn_implementation("eager")
    return tower


@pytest.mark.parametrize("anyres", [False, True])
def test_probe_matches_eager_attention_of_the_same_layer(tiny_model, eager_tower, chart, anyres):
    path = VisualPath(tiny_model, "hired", anyres=anyres)
    pixels = path.prepare(chart).pixel_values
    assert tiny_model.vision_tower.config._attn_implementation != "eager"  # the probe leaves SDPA on
    with torch.no_grad(), TowerProbe(tiny_model.vision_tower, (0, -1), keys=True) as probe:
        features = tiny_model.encode_views(pixels)
        eager = eager_tower(pixel_values=pixels, interpolate_pos_encoding=pixels.shape[-1] != 384,
                            output_attentions=True, output_hidden_states=True)
    got = probe.attention()
    for layer in (0, -1):
        brute = eager.attentions[layer].mean(dim=(1, 2))  # [V, H, N, N] -> mean over heads and queries
        torch.testing.assert_close(got[layer], brute, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got[layer].sum(-1), torch.ones(pixels.shape[0]))
    last = tiny_model.vision_tower.encoder.layers[-1]
    keys = last.self_attn.k_proj(last.layer_norm1(eager.hidden_states[-2]))
    torch.testing.assert_close(probe.keys(), keys, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features, eager.hidden_states[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", REDUCERS)
@pytest.mark.parametrize("anyres", [False, True])
def test_every_reducer_through_the_visual_path(tiny_model, chart, variant, anyres):
    path = VisualPath(tiny_model, variant, k=200, anyres=anyres)
    tiny_model.zero_grad(set_to_none=True)
    seq = path(chart)
    assert seq.n_tokens == 200 and seq.info["n_tokens"] == [200]
    kept = seq.kept_indices
    assert torch.all(kept[1:] > kept[:-1])
    seq.embeds.square().sum().backward()
    assert tiny_model.mm_projector[0].weight.grad.abs().sum() > 0
    tiny_model.zero_grad(set_to_none=True)
    if variant in ("divprune", "dart", "hired"):  # selection only: the projected tokens at the kept positions
        with torch.no_grad():
            views = path.prepare(chart)
            all_tokens = tiny_model.encode_images(views.pixel_values)
            if anyres:
                all_tokens = all_tokens.reshape(-1, all_tokens.shape[-1])[anyres_order(27, views.grid_wh)]
            else:
                all_tokens = all_tokens[0]
        torch.testing.assert_close(seq.embeds.detach(), all_tokens[kept], atol=1e-5, rtol=1e-5)


def test_anyres_layout_maps_the_global_view_onto_its_tiles(tiny_model):
    image = Image.new("RGB", (768, 384), "white")  # fills a 2x1 tile canvas exactly
    views = tiny_model.image_processor.anyres(image)
    assert views.grid_wh == (2, 1)
    layout = anyres_layout(views, 27, 384)
    to_view = layout.global_to_view.view(27, 27)
    assert torch.all(to_view[:, :13] == 1) and torch.all(to_view[:, 14:] == 2)  # left half -> tile 1, right -> 2
    assert layout.n_views == 3 and torch.bincount(layout.view_of).tolist() == [729, 729, 729]


def test_anyres_needs_a_selector_that_takes_it(tiny_model):
    with pytest.raises(ValueError, match="does not take anyres=true; selectors that do: dart, divprune"):
        VisualPath(tiny_model, "shirg_fixed", anyres=True)
    with pytest.raises(ValueError, match="released path"):
        VisualPath(tiny_model, "lavida", anyres=True)


# ---------------------------------------------------------------------------------------------- FastV
def _prompt(tiny_model, tiny_tokenizer, chart, variant="fastv", **params):
    path = VisualPath(tiny_model, variant, **params)
    with torch.no_grad():
        visual = path(chart)
        ids = build_prompt_ids(tiny_tokenizer, QUESTION)
        prompt = tiny_model.embed_prompt(ids, visual.embeds)
    return path, visual, ids, prompt


@pytest.mark.parametrize("lm_layers", [1, 2])
def test_fastv_scores_match_eager_attention_and_cache_holds_kept_only(tiny_checkpoint, tiny_model, tiny_tokenizer,
                                                                      chart, lm_layers):
    path, visual, ids, prompt = _prompt(tiny_model, tiny_tokenizer, chart, k=300, lm_layers=lm_layers)
    span = path.lm_prefill(ids, visual).visual_span
    assert span[1] - span[0] == 2304
    result = fastv_prefill(tiny_model, prompt, span, 300, lm_layers)
    eager = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32", attn_implementation="eager")
    total = prompt.shape[1]
    mask = torch.zeros(1, 1, total, total)
    with torch.no_grad():
        out = eager.language_model(inputs_embeds=prompt, attention_mask=mask, output_attentions=True)
    attn = out.attentions[lm_layers - 1][0].mean(0)  # [T, T] averaged over heads
    text = torch.cat([torch.arange(span[0]), torch.arange(span[1], total)])
    brute = attn[text].mean(0)[span[0]:span[1]]
    torch.testing.assert_close(result.scores, brute, atol=1e-6, rtol=1e-5)
    assert result.kept.numel() == 300 and torch.all(result.kept[1:] > result.kept[:-1])
    assert set(result.kept.tolist()) == set(torch.topk(brute, 300).indices.tolist())
    kept_len = total - 2304 + 300
    assert result.cache.get_seq_length() == kept_len
    assert all(layer.keys.shape[2] == kept_len for layer in result.cache.layers)


def test_fastv_keeping_everything_is_the_plain_prefill(tiny_model, tiny_tokenizer, chart):
    path, visual, ids, prompt = _prompt(tiny_model, tiny_tokenizer, chart, k=2304)
    config = GenerationConfig(gen_length=8)
    plain = generate(tiny_model, prompt, config)
    pruned = generate(tiny_model, prompt, config, prefill=path.lm_prefill(ids, visual))
    assert torch.equal(plain.ids, pruned.ids)


def test_fastv_through_the_pipeline_records_its_cost(tiny_checkpoint, tiny_model, tiny_tokenizer, chart):
    pipe = ShirgPipeline(tiny_checkpoint, "fastv", model=tiny_model, tokenizer=tiny_tokenizer, k=128)
    answer = pipe.answer(chart, QUESTION, GenerationConfig(gen_length=8))
    assert answer.visual.n_tokens == 128 and answer.visual.kept_indices.numel() == 128
    cost = answer.visual.info["fastv"]
    assert cost["n_visual_in"] == 2304 and cost["lm_layers"] == 2
    assert all(cost[key] > 0 for key in ("full_layers_ms", "rank_ms", "kept_layers_ms"))
    full = ShirgPipeline(tiny_checkpoint, "lavida_672", model=tiny_model, tokenizer=tiny_tokenizer)
    baseline = full.answer(chart, QUESTION, GenerationConfig(gen_length=8))
    assert answer.info["prefix_kv_mb"] < baseline.info["prefix_kv_mb"]
    with pytest.raises(ValueError, match="prefix_cache=true"):
        pipe.answer(chart, QUESTION, GenerationConfig(gen_length=8, prefix_cache=False))


@pytest.mark.slow
def test_methods_sweep_runs_every_method_at_the_same_lm_side_budgets(tiny_checkpoint, tiny_model, tiny_tokenizer,
                                                                     chart):
    """configs/sweeps/methods.yaml: every method's cells feed the LM exactly 912, 768, 576 and 256 visual tokens."""
    from collections import defaultdict
    from pathlib import Path

    from shirg_eval.report.sweep import load_sweep

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "methods.yaml")
    budgets: dict[str, set[int]] = defaultdict(set)
    for cell in sweep.cells:
        if cell.model in ("lavida", "lavida_384", "lavida_672"):
            continue
        args = dict(cell.model_args)
        if cell.model == "fastv":  # FastV narrows inside the LM: count what its prefill kept
            pipe = ShirgPipeline(tiny_checkpoint, cell.model, model=tiny_model, tokenizer=tiny_tokenizer, **args)
            tokens = pipe.answer(chart, QUESTION, GenerationConfig(gen_length=2)).visual.n_tokens
        else:
            with torch.no_grad():
                tokens = VisualPath(tiny_model, cell.model, **args)(chart).n_tokens
        assert cell.name.endswith(f"_k{tokens}"), (cell.name, tokens)
        budgets[cell.name.rsplit("_k", 1)[0]].add(tokens)
    assert len(budgets) == 12  # shirg_fixed, pool_k, random_k, 8 reducers and HiRED on anyres
    assert all(b == {912, 768, 576, 256} for b in budgets.values()), budgets


def test_fastv_kept_tokens_carry_gradients_to_the_projector(tiny_model, tiny_tokenizer, chart):
    from shirg_eval.selection.selectors.fastv import FastVResult

    path = VisualPath(tiny_model, "fastv", k=50)
    tiny_model.zero_grad(set_to_none=True)
    visual = path(chart)  # with grad: every token, as the LM's first layers see them
    ids = build_prompt_ids(tiny_tokenizer, QUESTION)
    hook = path.lm_prefill(ids, visual)
    with torch.no_grad():
        hook.result = fastv_prefill(tiny_model, tiny_model.embed_prompt(ids, visual.embeds), hook.visual_span, 50)
    assert isinstance(hook.result, FastVResult)
    kept = hook.apply(visual)
    assert kept.n_tokens == 50 and torch.equal(kept.kept_indices, hook.result.kept)
    kept.embeds.square().sum().backward()
    assert tiny_model.mm_projector[0].weight.grad.abs().sum() > 0
    tiny_model.zero_grad(set_to_none=True)
