"""The static prefix cache, the sync-free fixed schedule and confidence-threshold decoding (tiny model, CPU)."""

from __future__ import annotations

import pytest
import torch

from shirg_eval.model.kv_cache import fill_prefix
from shirg_eval.model.sampler import GenerationConfig, generate


def _prompt(model, length: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, length, model.config.d_model, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
@pytest.mark.parametrize("kv_dtype", ["auto", "bf16", "int8"])
def test_static_buffer_is_written_in_place_not_reallocated(tiny_model, kv_dtype):
    """Every step reuses one [B, H, prefix + canvas, D] buffer per layer; auto keeps no second prefix copy."""
    cache, _ = fill_prefix(tiny_model, _prompt(tiny_model), kv_dtype)
    stored = cache.nbytes()
    pos = torch.arange(40, 48)[None]
    pointers = set()
    for seed in range(3):
        answer = torch.randn(1, 8, tiny_model.config.d_model, generator=torch.Generator().manual_seed(seed))
        tiny_model.logits(answer, cache=cache, position_ids=pos)
        layer = cache.layers[0]
        pointers.add(layer.key_buffer.data_ptr())
        assert layer.key_buffer.shape[-2] == 48 and cache.get_seq_length() == 40
    assert len(pointers) == 1
    assert cache.nbytes() == stored  # the stored prefix did not grow
    assert cache.working_nbytes() == 2 * tiny_model.config.n_layers * tiny_model.config.d_model * 48 * 4
    if kv_dtype == "auto":  # the stored prefix is a view of the working buffer
        assert cache.layers[0].keys.data_ptr() == cache.layers[0].key_buffer.data_ptr()


@torch.no_grad()
def test_fixed_decoding_never_reads_the_canvas_on_the_host(tiny_model, monkeypatch):
    """Fixed-step decoding decides nothing from device values: no tensor -> Python conversion during the steps."""
    prompt = _prompt(tiny_model)
    expected = generate(tiny_model, prompt, GenerationConfig(gen_length=16, block_length=8, steps=8)).ids
    cache, _ = fill_prefix(tiny_model, prompt)
    calls: list[str] = []
    import shirg_eval.model.sampler as sampler

    real_step = sampler._prefix_cached_step

    def guarded_step(*args, **kwargs):
        step = real_step(*args, **kwargs)  # the prefill may sync; the steps may not
        for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _o=original, **k: (
                calls.append(_n), _o(self, *a, **k))[1])
        return step

    monkeypatch.setattr(sampler, "_prefix_cached_step", guarded_step)
    ids = generate(tiny_model, prompt, GenerationConfig(gen_length=16, block_length=8, steps=8)).ids
    monkeypatch.undo()
    assert ids.tolist() == expected.tolist()
    assert calls == [], f"host syncs during fixed-step decoding: {sorted(set(calls))}"


@torch.no_grad()
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_threshold_above_one_is_one_token_per_step(tiny_model, temperature):
    """A threshold never reached commits only the most confident token: fixed decoding with steps = gen_length."""
    prompt = _prompt(tiny_model, seed=3)
    base = dict(gen_length=16, block_length=8, temperature=temperature)
    fixed = generate(tiny_model, prompt, GenerationConfig(**base, steps=16),
                     generator=torch.Generator().manual_seed(5))
    thresh = generate(tiny_model, prompt, GenerationConfig(**base, decoding="threshold", threshold=1.5),
                      generator=torch.Generator().manual_seed(5))
    assert thresh.ids.tolist() == fixed.ids.tolist()
    assert thresh.n_forward == fixed.n_forward == 17 and thresh.sample_n_forward == [17]


@torch.no_grad()
def test_lower_threshold_means_fewer_forward_passes(tiny_model, tiny_tokenizer):
    from PIL import Image

    from shirg_eval.model.prompting import build_prompt_ids

    image = Image.new("RGB", (320, 240), (250, 250, 250))
    prompt = tiny_model.embed_prompt(build_prompt_ids(tiny_tokenizer, "What is shown?"),
                                     tiny_model.visual_sequence(image).embeds)
    forwards = {}
    for threshold in (1.5, 0.5, 0.01):
        out = generate(tiny_model, prompt, GenerationConfig(gen_length=32, block_length=16, decoding="threshold",
                                                            threshold=threshold))
        assert (out.ids != tiny_model.config.mask_token_id).all()  # every position committed
        forwards[threshold] = out.n_forward
    assert forwards[1.5] == 33
    assert forwards[0.01] < forwards[1.5], forwards
    assert forwards[0.01] <= forwards[0.5] <= forwards[1.5], forwards
    assert forwards[0.01] == 3  # everything clears 1 %: one step per block


def test_threshold_options_are_validated():
    with pytest.raises(ValueError, match="decoding"):
        GenerationConfig(decoding="greedy").resolved()
    with pytest.raises(ValueError, match="threshold must be > 0"):
        GenerationConfig(decoding="threshold", threshold=0).resolved()
    with pytest.raises(ValueError, match="remasking=low_confidence"):
        GenerationConfig(decoding="threshold", remasking="random").resolved()
