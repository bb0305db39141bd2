"""The model core against golden outputs of the reference LaViDa implementation (../shared/fixtures).

Every ``set_*`` folder found is checked, so new fixture sets (other seeds, dims, image shapes) are picked up
without code changes. Tolerances (fp32, CPU): 1e-5 for pixels, vision features and visual embeddings, 1e-4 for
logits; generated ids exactly.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fixture_sets
from PIL import Image
from safetensors.torch import load_file
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.sampler import GenerationConfig, generate

SETS = fixture_sets()
VISION_TOL, LOGIT_TOL = 1e-5, 1e-4


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != expected {tuple(b.shape)}"
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module", params=SETS, ids=[p.name for p in SETS])
def fixture(request):
    root = request.param
    meta = json.loads((root / "meta.json").read_text())
    expected = load_file(str(root / "expected.safetensors"))
    model = LavidaModel.from_pretrained(root / "checkpoint", device="cpu", dtype=torch.float32)
    return root, meta, expected, model


def u8_to_pixels(views_u8: torch.Tensor) -> torch.Tensor:
    return ((views_u8.double() * (1 / 255)).float() - 0.5).div(0.5).permute(0, 3, 1, 2)


@torch.no_grad()
def test_preprocessing_and_vision(fixture):
    root, meta, exp, model = fixture
    image = Image.open(root / "test_image.png")
    seq = model.visual_sequence(image)
    assert max_err(seq.views.pixel_values, exp["pixel_values"]) <= VISION_TOL
    assert seq.views.image_size == tuple(exp["image_sizes_wh"][0].tolist())
    if meta.get("anyres_grid_wh"):
        assert list(seq.views.grid_wh) == meta["anyres_grid_wh"]
    features = model.encode_views(exp["pixel_values"])
    assert max_err(features, exp["vision_features"]) <= VISION_TOL
    projected = model.project(features)
    assert max_err(projected, exp["projector_output"]) <= VISION_TOL
    if "pooled_features" in exp:
        assert max_err(model.pool_2d(projected), exp["pooled_features"]) <= VISION_TOL
    assert seq.n_tokens == meta["n_visual_tokens"]
    assert max_err(seq.embeds, exp["visual_embeds"]) <= VISION_TOL
    inputs = model.embed_prompt(exp["input_ids"], seq.embeds)
    assert max_err(inputs, exp["inputs_embeds"]) <= VISION_TOL
    if "alt_tensorpath_visual_embeds" in exp:  # lmms-eval's 4-D tensor path: same pixels, unpooled, no newline
        assert max_err(model.encode_images(exp["pixel_values"])[0], exp["alt_tensorpath_visual_embeds"]) <= VISION_TOL


@torch.no_grad()
def test_extra_images(fixture):
    root, meta, exp, model = fixture
    for name, info in (meta.get("extra_images") or {}).items():
        seq = model.visual_sequence(Image.open(root / info["file"]))
        assert seq.views.pixel_values.shape[0] == info["n_views"]
        assert max_err(seq.views.pixel_values, u8_to_pixels(exp[f"{name}_pixel_views_uint8"])) <= VISION_TOL
        assert list(seq.views.grid_wh) == info["anyres_grid_wh"]
        assert max_err(model.encode_views(seq.views.pixel_values), exp[f"{name}_vision_features"]) <= VISION_TOL
        assert seq.n_tokens == info["n_visual_tokens"]
        assert max_err(seq.embeds, exp[f"{name}_visual_embeds"]) <= VISION_TOL
        inputs = model.embed_prompt(exp["input_ids"], seq.embeds)
        assert max_err(inputs, exp[f"{name}_inputs_embeds"]) <= VISION_TOL
        mask_embed = model.embed_tokens.weight[meta["ids"]["mask"]]
        full = torch.cat([inputs, mask_embed.expand(1, 8, -1)], dim=1)
        assert max_err(model.logits(full)[:, -8:], exp[f"{name}_logits_full_masks"]) <= LOGIT_TOL
        call = info["generate_call"]
        out = generate(model, inputs, _gen_config(call), mask_id=call["mask_id"])
        assert out.ids.tolist() == info["gen_output_ids"]


@torch.no_grad()
def test_language_model_and_prefix_cache(fixture):
    _, meta, exp, model = fixture
    assert max_err(model.logits(exp["lm_input_full"]), exp["logits_full"]) <= LOGIT_TOL
    cache, prompt_logits = model.fill_prefix_cache(exp["inputs_embeds"])
    assert max_err(prompt_logits, exp["logits_prompt_only"]) <= LOGIT_TOL
    # The reference caches keys before RoPE; transformers caches them rotated. Rotate the expected ones.
    length = exp["inputs_embeds"].shape[1]
    positions = torch.arange(length)[None]
    cos, sin = model.language_model.model.rotary_emb(exp["inputs_embeds"], positions)
    for layer, cached in enumerate(cache.layers):
        rotated, _ = apply_rotary_pos_emb(exp["prefix_cache_keys"][layer], exp["prefix_cache_keys"][layer], cos, sin)
        assert max_err(cached.keys, rotated) <= VISION_TOL * 10
        assert max_err(cached.values, exp["prefix_cache_values"][layer]) <= VISION_TOL * 10
    n_masks = exp["logits_prefix_cached_masks"].shape[1]
    masks = exp["lm_input_full"][:, -n_masks:]
    logits = model.logits(masks, cache=cache)
    assert max_err(logits, exp["logits_prefix_cached_masks"]) <= LOGIT_TOL


def _gen_config(call: dict) -> GenerationConfig:
    return GenerationConfig(
        gen_length=call["max_new_tokens"], block_length=call["block_length"], steps=call.get("steps"),
        step_per_block=call.get("step_per_block"), step_ratio=call.get("step_ratio"), schedule=call.get("schedule"),
        temperature=call.get("temperature", 0.0), remasking=call.get("remasking", "low_confidence"),
        prefix_cache=call.get("prefix_lm", True),
    )


@torch.no_grad()
def test_generation(fixture):
    _, meta, exp, model = fixture
    assert meta["generate"], "fixture set has no generation cases"
    for name, case in meta["generate"].items():
        call = case["call"]
        config = _gen_config(call)
        step_logits: list[torch.Tensor] = []
        out = generate(model, exp["inputs_embeds"], config, mask_id=call["mask_id"],
                       on_step_logits=step_logits.append, record_history=True)
        expected_ids = exp[f"{name}_output_ids"]
        assert out.ids.tolist() == expected_ids[:, -config.gen_length:].tolist(), name
        if not call["prefix_lm"]:  # the reference returns the whole canvas with 0 in the prompt slots
            assert expected_ids[:, : -config.gen_length].eq(0).all()
        assert out.n_forward == case["n_forward"], name
        history = torch.stack([h[0] for h in out.history])
        assert history.tolist() == exp[f"{name}_history"][:, 0, -config.gen_length:].tolist(), name
        assert max_err(torch.stack([s[0] for s in step_logits]), exp[f"{name}_step_logits"]) <= LOGIT_TOL, name
