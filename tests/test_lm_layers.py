"""The model's API for in-LM reducers: the LM a few layers at a time, and a prefix cache narrowed to some positions.

Run in two parts without dropping anything, the LM is the plain forward; FastV's prefill (which uses it) keeping
every token is the plain prefill."""

from __future__ import annotations

import pytest
import torch

from shirg_eval.model.kv_cache import PrefixCache, fill_prefix

N_PROMPT = 40


@pytest.fixture(scope="module")
def prompt(tiny_model) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, N_PROMPT, tiny_model.config.d_model, generator=g)


@pytest.mark.parametrize("split", [1, 2])
def test_first_layers_then_the_rest_is_the_full_forward(tiny_model, prompt, split):
    n_layers = tiny_model.config.n_layers
    with torch.no_grad():
        plain_cache, _ = fill_prefix(tiny_model, prompt)
        full = tiny_model.forward(prompt, output_hidden_states=True).hidden_states[-1]  # after the final norm
        cache = PrefixCache(n_layers)
        first = tiny_model.run_first_layers(prompt, split, cache)
        assert first.queries is None and torch.equal(first.position_ids, torch.arange(N_PROMPT)[None])
        assert [layer.is_initialized for layer in cache.layers] == [i < split for i in range(n_layers)]
        hidden = tiny_model.run_layers_from(split, first.hidden, first.position_ids, cache)
        torch.testing.assert_close(tiny_model.language_model.model.norm(hidden), full, atol=1e-6, rtol=1e-5)
    for ours, plain in zip(cache.layers, plain_cache.layers, strict=True):
        torch.testing.assert_close(ours.keys, plain.keys, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours.values, plain.values, atol=1e-6, rtol=1e-5)


def test_returned_queries_are_the_layers_attention_queries(tiny_model, prompt):
    """softmax(q k^T / sqrt(d)) with the returned queries and the cached keys is the layer's attention map."""
    from shirg_eval.model.lavida import LavidaModel

    eager = LavidaModel.from_pretrained(tiny_model.checkpoint_path, device="cpu", dtype="float32",
                                        attn_implementation="eager")
    with torch.no_grad():
        cache = PrefixCache(eager.config.n_layers)
        first = eager.run_first_layers(prompt, 2, cache, return_queries=True)
        attentions = eager.language_model(inputs_embeds=prompt, attention_mask=torch.zeros(1, 1, N_PROMPT, N_PROMPT),
                                          output_attentions=True).attentions
    keys = cache.layers[1].keys
    keys = keys.repeat_interleave(first.queries.shape[1] // keys.shape[1], dim=1)
    weights = torch.softmax(first.queries @ keys.transpose(-1, -2) * first.queries.shape[-1] ** -0.5, dim=-1)
    torch.testing.assert_close(weights, attentions[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kv_dtype", ["auto", "int8"])
def test_keep_narrows_every_filled_layer_and_only_those(tiny_model, prompt, kv_dtype):
    with torch.no_grad():
        cache = PrefixCache(tiny_model.config.n_layers, kv_dtype)
        tiny_model.run_first_layers(prompt, 1, cache)
        before = cache.layers[0].prefix()
        scale = cache.layers[0].key_scale
        positions = torch.tensor([0, 3, 4, 9, 39])
        cache.keep(positions)
    assert cache.get_seq_length() == 5 and not cache.layers[1].is_initialized
    after = cache.layers[0].prefix()
    assert torch.equal(after[0], before[0][:, :, positions]) and torch.equal(after[1], before[1][:, :, positions])
    assert scale is None or cache.layers[0].key_scale is scale  # per-channel scales of the whole prefill stay


def test_keep_after_the_first_step_is_refused(tiny_model, prompt):
    with torch.no_grad():
        cache, _ = fill_prefix(tiny_model, prompt)
        cache.prepare_static(1, 8, prompt.dtype)
    with pytest.raises(RuntimeError, match="after the first denoising step"):
        cache.keep(torch.arange(4))


def test_layer_counts_outside_the_lm_are_refused(tiny_model, prompt):
    n_layers = tiny_model.config.n_layers
    with pytest.raises(ValueError, match=rf"n_layers=0 must be in \[1, {n_layers}\]"):
        tiny_model.run_first_layers(prompt, 0, PrefixCache(n_layers))
    with pytest.raises(ValueError, match=rf"first_layer={n_layers + 1} must be in"):
        tiny_model.run_layers_from(n_layers + 1, prompt, torch.arange(N_PROMPT)[None], PrefixCache(n_layers))


def test_one_transformers_shim():
    """The cache argument's spelling is read in model/compat.py only (no other module inspects transformers)."""
    from conftest import REPO

    readers = sorted(str(p.relative_to(REPO)) for p in (REPO / "shirg_eval").rglob("*.py")
                     if "inspect.signature(Llama" in p.read_text(encoding="utf-8")
                     or "past_key_value\"" in p.read_text(encoding="utf-8"))
    assert readers == ["shirg_eval/model/compat.py"], readers
