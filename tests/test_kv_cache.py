"""Prefix-cache storage (kv_dtype) and the frozen prefix: exactness, closeness, bytes.

Tolerances (fp32 CPU model, logits of the answer tokens on top of the prefix, relative to max |logit|):
fp16 <= 0.5%, bf16 <= 5%, int8 (per-channel symmetric) <= 8%. On the golden fixtures (q/k weights scaled 3x, so
attention is sharp and cache errors are amplified) the measured values are ~0.15%, ~2% and ~3-4.5%.
Ids: ``auto`` is bit-identical to the DynamicCache path (test_fidelity.py checks the goldens); fp16 keeps every
fixture's ids; bf16 and int8 flip a near-tie commit on some fixture cases (listed below), so there the
teacher-forced step logits (same canvas for both caches) are checked instead. The golden-fixture tests follow
``SHIRG_TEST_DEVICE`` (conftest.py); the exact-id lists were measured on the CPU, so on another device only the
logits are held to the tolerances (a near-tie can fall the other way there). They run in float32 only: the
tolerances are those of lossy storage under an exact model.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TEST_DEVICE, TEST_DTYPE, fixture_sets, load_golden_model
from safetensors.torch import load_file

from shirg_eval.model.kv_cache import PrefixCache, cache_bytes, fill_prefix
from shirg_eval.model.sampler import GenerationConfig, generate

SETS = fixture_sets()
golden_fp32_only = pytest.mark.skipif(TEST_DTYPE != "float32", reason="storage tolerances assume a float32 model")
REL_TOL = {"auto": 1e-5, "fp16": 5e-3, "bf16": 5e-2, "int8": 8e-2}
# (kv_dtype, set, case) whose generated ids equal the fp32 cache's exactly (measured; everything else flips a tie)
IDS_EXACT = {
    ("bf16", "set_A", "gen3_prefix_L16_B8_ratio05_shift"), ("bf16", "set_B", "gen1_prefix_L8_B8"),
    ("bf16", "set_B", "gen3_prefix_L16_B8_ratio05_shift"),
    ("int8", "set_A", "gen1_prefix_L8_B8"), ("int8", "set_B", "gen1_prefix_L8_B8"),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module", params=SETS, ids=[p.name for p in SETS])
def fixture(request):
    root = request.param
    meta = json.loads((root / "meta.json").read_text())
    expected = load_file(str(root / "expected.safetensors"))
    model = load_golden_model(root)
    # golden inputs on the model's device (the expected outputs stay on the CPU; rel_err compares there)
    inputs = {k: expected[k].to(model.device) for k in ("inputs_embeds", "lm_input_full")}
    return root, meta, {**expected, **inputs}, model


def _config(call: dict, kv_dtype: str) -> GenerationConfig:
    return GenerationConfig(
        gen_length=call["max_new_tokens"], block_length=call["block_length"], steps=call.get("steps"),
        step_per_block=call.get("step_per_block"), step_ratio=call.get("step_ratio"), schedule=call.get("schedule"),
        temperature=call.get("temperature", 0.0), remasking=call.get("remasking", "low_confidence"),
        prefix_cache=True, kv_dtype=kv_dtype)


@golden_fp32_only
@torch.no_grad()
@pytest.mark.parametrize("kv_dtype", ["auto", "fp16", "bf16", "int8"])
def test_fixture_prefix_logits_close(fixture, kv_dtype):
    """The golden prefix-cached mask logits, through each storage dtype."""
    _, _, exp, model = fixture
    ref = exp["logits_prefix_cached_masks"]
    n = ref.shape[1]
    length = exp["inputs_embeds"].shape[1]
    cache, _ = fill_prefix(model, exp["inputs_embeds"], kv_dtype)
    positions = torch.arange(length, length + n, device=model.device)[None]
    logits = model.logits(exp["lm_input_full"][:, -n:], cache=cache, position_ids=positions)
    assert rel_err(logits, ref) <= REL_TOL[kv_dtype], kv_dtype
    assert cache.get_seq_length() == length  # frozen: the step's tokens were not kept


@golden_fp32_only
@torch.no_grad()
@pytest.mark.parametrize("kv_dtype", ["fp16", "bf16", "int8"])
def test_fixture_generation(fixture, kv_dtype):
    root, meta, exp, model = fixture
    for name, case in meta["generate"].items():
        call = case["call"]
        if not call.get("prefix_lm", True):
            continue
        ref = generate(model, exp["inputs_embeds"], _config(call, "auto"), mask_id=call["mask_id"], record_history=True)
        out = generate(model, exp["inputs_embeds"], _config(call, kv_dtype), mask_id=call["mask_id"])
        assert ref.ids.tolist() == exp[f"{name}_output_ids"][:, -ref.ids.shape[1]:].tolist()
        if TEST_DEVICE == "cpu" and (kv_dtype == "fp16" or (kv_dtype, root.name, name) in IDS_EXACT):
            assert out.ids.tolist() == ref.ids.tolist(), (kv_dtype, name)
        # teacher-forced: every canvas the fp32 run saw, through both caches
        canvases = [torch.full_like(ref.ids, call["mask_id"])] + ref.history[:-1]
        length = exp["inputs_embeds"].shape[1]
        pos = torch.arange(length, length + ref.ids.shape[1], device=model.device)[None]
        exact, _ = fill_prefix(model, exp["inputs_embeds"], "auto")
        lossy, _ = fill_prefix(model, exp["inputs_embeds"], kv_dtype)
        for canvas in canvases:
            emb = model.embed_tokens(canvas)
            a = model.logits(emb, cache=exact, position_ids=pos)
            b = model.logits(emb, cache=lossy, position_ids=pos)
            assert rel_err(b, a) <= REL_TOL[kv_dtype], (kv_dtype, name)


@torch.no_grad()
def test_auto_is_bit_identical_to_append_and_crop(tiny_model):
    """The frozen cache hands attention exactly what DynamicCache's append+crop did."""
    torch.manual_seed(0)
    prompt = torch.randn(1, 40, tiny_model.config.d_model)
    answer = torch.randn(1, 8, tiny_model.config.d_model)
    pos = torch.arange(40, 48)[None]
    dyn, _ = tiny_model.fill_prefix_cache(prompt)
    frozen, _ = fill_prefix(tiny_model, prompt, "auto")
    for _ in range(3):  # repeated steps: the DynamicCache is cropped back each time, the PrefixCache never grows
        a = tiny_model.logits(answer, cache=dyn, position_ids=pos)
        dyn.crop(-(dyn.get_seq_length() - 40))
        b = tiny_model.logits(answer, cache=frozen, position_ids=pos)
        assert torch.equal(a, b)
    assert cache_bytes(frozen) == cache_bytes(dyn)
    with pytest.raises(ValueError, match="frozen"):
        frozen.crop(-1)


@torch.no_grad()
@pytest.mark.parametrize("kv_dtype", ["bf16", "fp16", "int8"])
def test_tiny_logits_close_and_bytes(tiny_model, kv_dtype):
    torch.manual_seed(1)
    prompt = torch.randn(1, 300, tiny_model.config.d_model)
    answer = tiny_model.embed_tokens(torch.full((1, 16), tiny_model.config.mask_token_id))
    pos = torch.arange(300, 316)[None]
    ref_cache, _ = fill_prefix(tiny_model, prompt, "auto")
    cache, _ = fill_prefix(tiny_model, prompt, kv_dtype)
    ref = tiny_model.logits(answer, cache=ref_cache, position_ids=pos)
    out = tiny_model.logits(answer, cache=cache, position_ids=pos)
    assert out.dtype == ref.dtype  # upcast on use
    assert rel_err(out, ref) <= REL_TOL[kv_dtype]
    sixteen = fill_prefix(tiny_model, prompt, "bf16")[0].nbytes()
    assert sixteen * 2 == ref_cache.nbytes()  # fp32 model: 16-bit storage halves the bytes
    if kv_dtype == "int8":
        assert cache.nbytes() <= 0.55 * sixteen
        # 2 * layers * heads * head_dim * tokens codes + one fp32 scale per layer/head/channel for K and V
        c = tiny_model.config
        assert cache.nbytes() == 2 * c.n_layers * c.d_model * 300 + 2 * c.n_layers * c.d_model * 4


def test_generation_reports_bytes_and_rejects_unknown_dtype(tiny_model):
    prompt = torch.randn(1, 20, tiny_model.config.d_model, generator=torch.Generator().manual_seed(2))
    out = generate(tiny_model, prompt, GenerationConfig(gen_length=8, steps=4, kv_dtype="int8"))
    assert out.prefix_cache_bytes == 2 * 2 * 64 * 20 + 2 * 2 * 64 * 4
    assert len(out.step_s) == 4 and out.denoise_s == pytest.approx(sum(out.step_s))
    with pytest.raises(ValueError, match="kv_dtype"):
        GenerationConfig(kv_dtype="int4").resolved()
    assert isinstance(PrefixCache(2, "bf16"), PrefixCache)
