"""The model core against golden outputs of the reference LaViDa implementation (../shared/fixtures).

Every ``set_*`` folder found is checked, so new fixture sets (other seeds, dims, image shapes) are picked up
without code changes. Device and dtype follow ``SHIRG_TEST_DEVICE`` / ``SHIRG_TEST_DTYPE`` (default CPU float32;
see conftest.py). Tolerances in float32: 1e-5 for pixels, vision features and visual embeddings, 1e-4 for logits
(max absolute error); generated ids exactly. In bfloat16: relative L2 error 2e-2 vision side, 0.15 logits; ids
are checked teacher-forced (conftest.Tolerance says why). Each test records its measured errors as properties
(``pytest --junitxml`` writes them), so a GPU run reports how close it came, not only that it passed.
"""

from __future__ import annotations

import json

import PIL
import pytest
import torch
from conftest import (
    CUDA_FLOAT32,
    TEST_DEVICE,
    TEST_DTYPE,
    TOLERANCES,
    fixture_sets,
    load_golden_model,
    tensor_error,
    tolerance_for,
)
from PIL import Image
from safetensors.torch import load_file
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from shirg_eval.model.kv_cache import fill_prefix
from shirg_eval.model.sampler import GenerationConfig, generate

SETS = fixture_sets()
TOL = tolerance_for(TEST_DEVICE, TEST_DTYPE)


class Errors:
    """Checks tensors against goldens and keeps the worst error per kind for the test's report."""

    def __init__(self, record_property):
        self.record = record_property
        self.worst: dict[str, float] = {}

    def check(self, kind: str, out: torch.Tensor, ref: torch.Tensor, tol: float, what: str = "") -> None:
        err = tensor_error(out, ref)
        self.worst[kind] = max(self.worst.get(kind, 0.0), err)
        self.record(f"{TOL.metric}_{kind}", f"{self.worst[kind]:.3e}")
        assert err <= tol, f"{what or kind}: {TOL.metric} error {err:.3e} > {tol:g} ({TEST_DEVICE} {TEST_DTYPE})"


@pytest.fixture
def errors(record_property) -> Errors:
    return Errors(record_property)


@pytest.fixture(scope="module", params=SETS, ids=[p.name for p in SETS])
def fixture(request):
    root = request.param
    meta = json.loads((root / "meta.json").read_text())
    expected = load_file(str(root / "expected.safetensors"))
    return root, meta, expected, load_golden_model(root)


def on_model(model, t: torch.Tensor) -> torch.Tensor:
    """A golden input on the model's device (floating tensors also in its dtype)."""
    return t.to(model.device, model.dtype) if t.is_floating_point() else t.to(model.device)


def u8_to_pixels(views_u8: torch.Tensor) -> torch.Tensor:
    return ((views_u8.double() * (1 / 255)).float() - 0.5).div(0.5).permute(0, 3, 1, 2)


def pillow_note(meta: dict) -> str:
    """Why pixels can differ: Pillow < 13 resamples horizontally first, 13 may go vertically first when a resize
    grows one axis and shrinks the other (view 0 of a portrait image), up to ~21 grey levels apart."""
    made, here = meta["versions"]["pillow"], PIL.__version__
    if made.split(".")[0] == here.split(".")[0]:
        return ""
    return f"Pillow {here} here, {made} made the goldens: resampling pass order differs; install pillow>={made}"


@torch.no_grad()
def test_preprocessing_and_vision(fixture, errors):
    root, meta, exp, model = fixture
    v = TOL.vision
    image = Image.open(root / "test_image.png")
    seq = model.visual_sequence(image)
    # CPU float32 in every mode
    assert tensor_error(seq.views.pixel_values, exp["pixel_values"]) <= 1e-5, pillow_note(meta)
    assert seq.views.image_size == tuple(exp["image_sizes_wh"][0].tolist())
    if meta.get("anyres_grid_wh"):
        assert list(seq.views.grid_wh) == meta["anyres_grid_wh"]
    features = model.encode_views(exp["pixel_values"])
    errors.check("vision_features", features, exp["vision_features"], v)
    projected = model.project(features)
    errors.check("projector_output", projected, exp["projector_output"], v)
    if "pooled_features" in exp:
        errors.check("pooled_features", model.pool_2d(projected), exp["pooled_features"], v)
    assert seq.n_tokens == meta["n_visual_tokens"]
    errors.check("visual_embeds", seq.embeds, exp["visual_embeds"], v)
    inputs = model.embed_prompt(exp["input_ids"], seq.embeds)
    errors.check("inputs_embeds", inputs, exp["inputs_embeds"], v)
    if "alt_tensorpath_visual_embeds" in exp:  # lmms-eval's 4-D tensor path: same pixels, unpooled, no newline
        errors.check("alt_tensorpath", model.encode_images(exp["pixel_values"])[0], exp["alt_tensorpath_visual_embeds"], v)


@torch.no_grad()
def test_extra_images(fixture, errors):
    root, meta, exp, model = fixture
    for name, info in (meta.get("extra_images") or {}).items():
        seq = model.visual_sequence(Image.open(root / info["file"]))
        assert seq.views.pixel_values.shape[0] == info["n_views"]
        assert tensor_error(seq.views.pixel_values, u8_to_pixels(exp[f"{name}_pixel_views_uint8"])) <= 1e-5, \
            pillow_note(meta)
        assert list(seq.views.grid_wh) == info["anyres_grid_wh"]
        errors.check("vision_features", model.encode_views(seq.views.pixel_values), exp[f"{name}_vision_features"],
                     TOL.vision, name)
        assert seq.n_tokens == info["n_visual_tokens"]
        errors.check("visual_embeds", seq.embeds, exp[f"{name}_visual_embeds"], TOL.vision, name)
        inputs = model.embed_prompt(exp["input_ids"], seq.embeds)
        errors.check("inputs_embeds", inputs, exp[f"{name}_inputs_embeds"], TOL.vision, name)
        mask_embed = model.embed_tokens.weight[meta["ids"]["mask"]]
        full = torch.cat([inputs, mask_embed.expand(1, 8, -1)], dim=1)
        errors.check("logits", model.logits(full)[:, -8:], exp[f"{name}_logits_full_masks"], TOL.logits, name)
        call = info["generate_call"]
        out = generate(model, inputs, _gen_config(call), mask_id=call["mask_id"])
        if TOL.ids_exact:
            assert out.ids.tolist() == info["gen_output_ids"]
        else:
            assert out.ids.shape[1] == len(info["gen_output_ids"][0])


@torch.no_grad()
def test_language_model_and_prefix_cache(fixture, errors):
    _, meta, exp, model = fixture
    errors.check("logits", model.logits(on_model(model, exp["lm_input_full"])), exp["logits_full"], TOL.logits)
    prompt = on_model(model, exp["inputs_embeds"])
    cache, prompt_logits = model.fill_prefix_cache(prompt)
    errors.check("logits", prompt_logits, exp["logits_prompt_only"], TOL.logits, "prompt logits")
    # The reference caches keys before RoPE; transformers caches them rotated. Rotate the expected ones.
    length = prompt.shape[1]
    positions = torch.arange(length, device=model.device)[None]
    cos, sin = model.language_model.model.rotary_emb(prompt, positions)
    for layer, cached in enumerate(cache.layers):
        keys = on_model(model, exp["prefix_cache_keys"][layer])
        rotated, _ = apply_rotary_pos_emb(keys, keys, cos, sin)
        errors.check("prefix_cache", cached.keys, rotated, TOL.vision * 10, f"layer {layer} keys")
        errors.check("prefix_cache", cached.values, exp["prefix_cache_values"][layer], TOL.vision * 10,
                     f"layer {layer} values")
    n_masks = exp["logits_prefix_cached_masks"].shape[1]
    masks = on_model(model, exp["lm_input_full"][:, -n_masks:])
    errors.check("logits", model.logits(masks, cache=cache), exp["logits_prefix_cached_masks"], TOL.logits,
                 "prefix-cached logits")


def _gen_config(call: dict) -> GenerationConfig:
    return GenerationConfig(
        gen_length=call["max_new_tokens"], block_length=call["block_length"], steps=call.get("steps"),
        step_per_block=call.get("step_per_block"), step_ratio=call.get("step_ratio"), schedule=call.get("schedule"),
        temperature=call.get("temperature", 0.0), remasking=call.get("remasking", "low_confidence"),
        prefix_cache=call.get("prefix_lm", True),
    )


@torch.no_grad()
def test_generation(fixture, errors, record_property):
    _, meta, exp, model = fixture
    assert meta["generate"], "fixture set has no generation cases"
    prompt = on_model(model, exp["inputs_embeds"])
    agree = total = 0
    for name, case in meta["generate"].items():
        call = case["call"]
        config = _gen_config(call)
        step_logits: list[torch.Tensor] = []
        out = generate(model, prompt, config, mask_id=call["mask_id"], on_step_logits=step_logits.append,
                       record_history=True)
        expected_ids = exp[f"{name}_output_ids"]
        golden = expected_ids[:, -config.gen_length:]
        assert out.n_forward == case["n_forward"], name
        if not call["prefix_lm"]:  # the reference returns the whole canvas with 0 in the prompt slots
            assert expected_ids[:, : -config.gen_length].eq(0).all()
        agree += int((out.ids.cpu() == golden).sum())
        total += golden.numel()
        if TOL.ids_exact:
            assert out.ids.tolist() == golden.tolist(), name
            history = torch.stack([h[0] for h in out.history])
            assert history.tolist() == exp[f"{name}_history"][:, 0, -config.gen_length:].tolist(), name
            errors.check("step_logits", torch.stack([s[0] for s in step_logits]), exp[f"{name}_step_logits"],
                         TOL.logits, name)
        # teacher-forced: the golden canvas before every step, through this model (in bf16 the only logit check,
        # since a flipped near-tie changes every later canvas; in float32 it must agree with the free run too)
        errors.check("step_logits_teacher_forced", _teacher_forced_logits(model, prompt, exp, name, call, config),
                     exp[f"{name}_step_logits"], TOL.logits, name)
    record_property("ids_agreeing_with_golden", f"{agree}/{total}")


def _teacher_forced_logits(model, prompt, exp, name: str, call: dict, config: GenerationConfig) -> torch.Tensor:
    gen = config.gen_length
    history = exp[f"{name}_history"][:, 0, -gen:].to(model.device)
    canvases = [torch.full_like(history[0], call["mask_id"])] + list(history[:-1])
    length = prompt.shape[1]
    positions = torch.arange(length, length + gen, device=model.device)[None]
    cache = fill_prefix(model, prompt)[0] if config.prefix_cache else None
    out = []
    for canvas in canvases:
        embeds = model.embed_tokens(canvas[None]).to(prompt.dtype)
        if cache is not None:
            out.append(model.logits(embeds, cache=cache, position_ids=positions)[0])
        else:
            out.append(model.logits(torch.cat([prompt, embeds], 1), logits_to_keep=gen)[0])
    return torch.stack(out)


@pytest.mark.parametrize("root", SETS, ids=[p.name for p in SETS])
@torch.no_grad()
def test_cuda_float32_tolerance_covers_the_goldens_own_rounding(root):
    """The goldens' distance to a float64 evaluation is their float32 rounding; another exact summation order (a
    GPU's) adds as much again, so CUDA's float32 logits tolerance must be at least twice it. The CPU's stays 1e-4."""
    from shirg_eval.model.lavida import LavidaModel

    meta = json.loads((root / "meta.json").read_text())
    exp = load_file(str(root / "expected.safetensors"))
    model = LavidaModel.from_pretrained(root / "checkpoint", device="cpu", dtype=torch.float64)
    worst = (model.logits(exp["lm_input_full"].double()) - exp["logits_full"].double()).abs().max().item()
    prompt = exp["inputs_embeds"].double()
    for name, case in meta["generate"].items():
        forced = _teacher_forced_logits(model, prompt, exp, name, case["call"], _gen_config(case["call"]))
        worst = max(worst, (forced - exp[f"{name}_step_logits"].double()).abs().max().item())
    assert 2 * worst <= CUDA_FLOAT32.logits, f"goldens {worst:.2e} from float64: CUDA float32 needs >= {2 * worst:.1e}"
    assert TOLERANCES["float32"].logits == 1e-4 and CUDA_FLOAT32.vision == TOLERANCES["float32"].vision
