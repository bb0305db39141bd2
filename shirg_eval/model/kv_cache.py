"""Prefix-DLM cache: the image+prompt keys/values, written once, read by every denoising step.

Built on transformers' cache classes (``Cache`` holding one :class:`PrefixLayer`, a ``DynamicLayer`` subclass, per
model layer). Two differences from a ``DynamicCache``:

* **frozen after the prefill**: the first ``update`` of a layer stores the prefix; every later ``update`` returns
  ``cat(prefix, new)`` *without storing* ``new``. A ``DynamicCache`` appends each step's keys/values and the sampler
  had to crop them off again (two extra copies of the whole cache per step); here nothing is written after the
  prefill and ``get_seq_length()`` stays the prefix length. With ``kv_dtype="auto"`` the tensors handed to
  attention are the very same values, so generated ids are bit-identical.
* **storage dtype** (``kv_dtype``): ``auto`` keeps the model dtype; ``bf16`` / ``fp16`` store 16-bit copies (for an
  fp32 model) and upcast on use; ``int8`` stores symmetric per-channel int8 codes with one fp32 scale per
  (batch, head, channel) -- the scale is taken over the prefix tokens, so it is computed once and never goes stale
  (the prefix never grows) -- and dequantises on use.

transformers' own ``QuantizedCache`` (quanto / HQQ backends) is not used: neither backend is installed, its
residual full-precision window is meant for a growing cache, and its first ``update`` is the only one that
quantises -- the frozen-prefix layer below is simpler and has no dependency.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

KV_DTYPES = ("auto", "bf16", "fp16", "int8")
_STORAGE = {"bf16": torch.bfloat16, "fp16": torch.float16}
_INT8_MAX = 127.0


def check_kv_dtype(kv_dtype: str) -> str:
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype {kv_dtype!r} is not one of {KV_DTYPES}")
    return kv_dtype


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel int8: ``x [B, H, T, D]`` -> codes ``[B, H, T, D]`` int8, scale ``[B, H, 1, D]`` fp32.

    Per channel (over the tokens) because key outliers sit in fixed channels (KIVI); for 8 bits the same grouping
    is accurate enough for values too, and its scales cost ``4 / T`` bytes per element (nothing at T ~ 1000).
    """
    xf = x.float()
    scale = (xf.abs().amax(dim=-2, keepdim=True) / _INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    codes = torch.round(xf / scale).clamp_(-_INT8_MAX, _INT8_MAX).to(torch.int8)
    return codes, scale


def dequantize_int8(codes: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (codes.float() * scale).to(dtype)


class PrefixLayer(DynamicLayer):
    """One layer's frozen prefix keys/values, stored as ``kv_dtype``."""

    is_croppable = False

    def __init__(self, kv_dtype: str = "auto"):
        super().__init__()
        self.kv_dtype = check_kv_dtype(kv_dtype)
        self.prefix_length = 0
        self.compute_dtype: torch.dtype | None = None
        # int8 only: codes live in keys/values (so generic byte counting sees them), scales here.
        self.key_scale: torch.Tensor | None = None
        self.value_scale: torch.Tensor | None = None

    # ----------------------------------------------------------------- storage
    def _store(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.compute_dtype = key_states.dtype
        self.prefix_length = key_states.shape[-2]
        if self.kv_dtype == "auto":
            self.keys, self.values = key_states, value_states
        elif self.kv_dtype in _STORAGE:
            self.keys = key_states.to(_STORAGE[self.kv_dtype])
            self.values = value_states.to(_STORAGE[self.kv_dtype])
        else:
            self.keys, self.key_scale = quantize_int8(key_states)
            self.values, self.value_scale = quantize_int8(value_states)
        self.is_initialized = True

    def prefix(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored prefix keys/values decoded to ``dtype`` (default: the dtype they were computed in)."""
        dtype = dtype or self.compute_dtype
        if self.kv_dtype == "int8":
            return dequantize_int8(self.keys, self.key_scale, dtype), dequantize_int8(self.values, self.value_scale, dtype)
        if self.keys.dtype == dtype:  # auto: the stored tensors themselves, so attention sees identical bits
            return self.keys, self.values
        return self.keys.to(dtype), self.values.to(dtype)

    def nbytes(self) -> int:
        tensors = [self.keys, self.values, self.key_scale, self.value_scale]
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    # ----------------------------------------------------------------- cache-layer protocol
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self._store(key_states, value_states)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            # The prefill pass: attention over the exact states (its logits are not used by the sampler).
            self._store(key_states, value_states)
            return key_states, value_states
        keys, values = self.prefix(key_states.dtype)
        # Not stored: the next step sees the prefix alone again, no crop needed.
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)

    def get_seq_length(self) -> int:
        return self.prefix_length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove:
            raise ValueError("a PrefixCache is frozen after the prefill; there is nothing to crop")

    def reset(self) -> None:
        super().reset()
        self.prefix_length = 0
        self.key_scale = self.value_scale = None


class PrefixCache(Cache):
    """A ``Cache`` of :class:`PrefixLayer`: filled by one forward pass, then read-only."""

    def __init__(self, n_layers: int, kv_dtype: str = "auto"):
        super().__init__(layers=[PrefixLayer(kv_dtype) for _ in range(n_layers)])
        self.kv_dtype = check_kv_dtype(kv_dtype)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)


def cache_bytes(cache) -> int:
    """Bytes held by a cache: codes and scales for a :class:`PrefixCache`, keys+values for any other."""
    if hasattr(cache, "nbytes"):
        return int(cache.nbytes())
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


@torch.no_grad()
def fill_prefix(model, prompt_embeds: torch.Tensor, kv_dtype: str = "auto", logits_to_keep: int = 1
                ) -> tuple[PrefixCache, torch.Tensor]:
    """One bidirectional pass over ``prompt_embeds`` into a :class:`PrefixCache`; returns (cache, logits).

    ``logits_to_keep=1`` (default) skips the LM head over the whole prompt: the sampler never reads those
    logits, and at LLaDA-8B sizes the head over ~1000 prompt positions is ~1 TFLOP. 0 keeps them all.
    """
    cache = PrefixCache(model.config.n_layers, kv_dtype)
    out = model.forward(prompt_embeds, cache=cache, use_cache=True, logits_to_keep=logits_to_keep)
    return cache, out.logits
