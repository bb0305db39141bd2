"""Prefix-DLM cache: the image+prompt keys/values, written once, read by every denoising step.

Built on transformers' cache classes (``Cache`` holding one :class:`PrefixLayer`, a ``DynamicLayer`` subclass, per
model layer). Two differences from a ``DynamicCache``:

* **frozen after the prefill, static working buffer**: the first ``update`` of a layer stores the prefix; the
  first denoising step allocates one ``[B, H, prefix + canvas, D]`` key and value buffer per layer (the decoded
  prefix copied in once), and every step writes its canvas keys/values into the canvas slots *in place* and hands
  attention the whole buffer (gpt-fast's static cache). No ``torch.cat`` of the prefix per step (the old layer
  copied the whole prefix keys and values once per layer per step), and ``get_seq_length()`` stays the prefix
  length. With ``kv_dtype="auto"`` attention sees the very same values, so generated ids are bit-identical.
* **storage dtype** (``kv_dtype``): ``auto`` keeps the model dtype; ``bf16`` / ``fp16`` store 16-bit copies (for an
  fp32 model) and upcast on use; ``int8`` stores symmetric per-channel int8 codes with one fp32 scale per
  (batch, head, channel) -- the scale is taken over the prefix tokens, so it is computed once and never goes stale
  (the prefix never grows). The stored codes are decoded *once*, into the compute-dtype working buffer, when the
  first step arrives (the old layer decoded them every step): lossy storage sets the prefix's rounding and its
  stored size (``nbytes``), and costs one decode per answer plus the working buffer (``working_nbytes``, as large
  as ``auto``'s) -- no kernel here reads int8 keys directly, so int8 saves no bandwidth per step.
* **batches**: :func:`pack_prefix_caches` pads per-sample prefixes (right padding) into one cache and returns the
  key-padding mask that keeps padding out of attention.

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
        # Static working buffers [B, H, prefix + canvas, D] in the compute dtype (allocated by the first step).
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

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
        """Bytes of the stored prefix (codes and scales); with ``auto`` its slots of the working buffer."""
        tensors = [self.keys, self.values, self.key_scale, self.value_scale]
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    def working_nbytes(self) -> int:
        """Bytes of the static working buffers (prefix + canvas, compute dtype); 0 before the first step."""
        tensors = [self.key_buffer, self.value_buffer]
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    def prepare_static(self, batch: int, canvas: int, dtype: torch.dtype) -> None:
        """Allocate the working buffers now (a compiled step must find them in place, not allocate them)."""
        heads, dim = self.keys.shape[1], self.keys.shape[-1]
        self._working(torch.empty(batch, heads, canvas, dim, dtype=dtype, device=self.keys.device))

    def _working(self, step_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The static buffers for steps shaped like ``step_keys``: allocated (prefix decoded in) once per shape."""
        batch, heads, canvas, dim = step_keys.shape
        shape = (batch, heads, self.prefix_length + canvas, dim)
        buffer = self.key_buffer
        if buffer is None or buffer.shape != shape or buffer.dtype != step_keys.dtype:
            keys, values = self.prefix(step_keys.dtype)
            self.key_buffer = step_keys.new_empty(shape)
            self.value_buffer = step_keys.new_empty(shape)
            self.key_buffer[:, :, : self.prefix_length].copy_(keys)
            self.value_buffer[:, :, : self.prefix_length].copy_(values)
            if self.kv_dtype == "auto":  # the buffer *is* the store now: no second copy of the prefix
                self.keys = self.key_buffer[:, :, : self.prefix_length]
                self.values = self.value_buffer[:, :, : self.prefix_length]
        return self.key_buffer, self.value_buffer

    def keep(self, positions: torch.Tensor) -> None:
        """Narrow the stored prefix to ``positions`` (``[P]`` indices, in the order they are to be kept)."""
        if self.key_buffer is not None:
            raise RuntimeError("PrefixLayer.keep after the first denoising step; narrow the prefix right after "
                               "the prefill")
        # int8: the codes are narrowed; the per-channel scales (over every prefill token) stay as they are
        self.keys, self.values = self.keys[:, :, positions], self.values[:, :, positions]
        self.prefix_length = int(positions.numel())

    # ----------------------------------------------------------------- cache-layer protocol
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self._store(key_states, value_states)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            # The prefill pass: attention over the exact states (its logits are not used by the sampler).
            self._store(key_states, value_states)
            return key_states, value_states
        keys, values = self._working(key_states)
        # The canvas slots are overwritten by every step: the prefix never grows, no crop needed.
        keys[:, :, self.prefix_length:].copy_(key_states)
        values[:, :, self.prefix_length:].copy_(value_states)
        return keys, values

    def get_seq_length(self) -> int:
        return self.prefix_length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove:
            raise ValueError("a PrefixCache is frozen after the prefill; there is nothing to crop")

    def reset(self) -> None:
        super().reset()
        self.prefix_length = 0
        self.key_scale = self.value_scale = None
        self.key_buffer = self.value_buffer = None


class PrefixCache(Cache):
    """A ``Cache`` of :class:`PrefixLayer`: filled by one forward pass, then read-only."""

    def __init__(self, n_layers: int, kv_dtype: str = "auto"):
        super().__init__(layers=[PrefixLayer(kv_dtype) for _ in range(n_layers)])
        self.kv_dtype = check_kv_dtype(kv_dtype)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)

    def keep(self, positions: torch.Tensor) -> None:
        """Keep only ``positions`` of the prefix in every layer filled so far (an in-LM reducer's pruning, FastV);
        the layers filled afterwards store what they are given, so one prefix length holds in every layer."""
        for layer in self.layers:
            if layer.is_initialized:
                layer.keep(positions)

    def working_nbytes(self) -> int:
        return sum(layer.working_nbytes() for layer in self.layers)

    def prepare_static(self, batch: int, canvas: int, dtype: torch.dtype) -> None:
        for layer in self.layers:
            layer.prepare_static(batch, canvas, dtype)


def _padded(t: torch.Tensor, length: int) -> torch.Tensor:
    """``t [1, H, T, D]`` right-padded with zeros to ``length`` positions (padding is masked, never attended)."""
    return torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[-2]))


def pack_prefix_caches(caches: list[PrefixCache], length: int | None = None
                       ) -> tuple[PrefixCache, torch.Tensor | None]:
    """One batched cache from per-sample prefill caches, and the ``[B, prefix]`` key-padding mask (True = pad).

    Prefixes are right-padded to the longest, or to ``length`` (a compiled step's shape bucket); one cache with
    no ``length`` is returned as is (mask None), so batch 1 is exactly the unbatched path. int8 scales stay per
    sample (``[B, H, 1, D]``).
    """
    if len(caches) == 1 and length is None:
        return caches[0], None
    kv_dtype = caches[0].kv_dtype
    if any(c.kv_dtype != kv_dtype for c in caches):
        raise ValueError("pack_prefix_caches: every cache in a batch must use the same kv_dtype")
    lengths = [c.get_seq_length() for c in caches]
    longest = max(lengths) if length is None else length
    if longest < max(lengths):
        raise ValueError(f"pack_prefix_caches: length {length} is shorter than the longest prefix {max(lengths)}")
    packed = PrefixCache(len(caches[0].layers), kv_dtype)
    for i, layer in enumerate(packed.layers):
        parts = [c.layers[i] for c in caches]
        layer.device, layer.compute_dtype = parts[0].device, parts[0].compute_dtype
        layer.prefix_length = longest
        layer.keys = torch.cat([_padded(p.keys, longest) for p in parts])
        layer.values = torch.cat([_padded(p.values, longest) for p in parts])
        if kv_dtype == "int8":
            layer.key_scale = torch.cat([p.key_scale for p in parts])
            layer.value_scale = torch.cat([p.value_scale for p in parts])
        layer.is_initialized = True
    positions = torch.arange(longest, device=caches[0].layers[0].keys.device)
    key_padding = positions[None] >= torch.tensor(lengths, device=positions.device)[:, None]
    return packed, key_padding


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
