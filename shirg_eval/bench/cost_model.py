"""Analytic cost model: FLOPs and bytes per stage, KV-cache sizes, predicted latency/memory ratios.

Counting conventions (stated so the numbers can be checked by hand):

* a Linear over ``n`` tokens costs ``2*n*d_in*d_out`` FLOPs (+ ``n*d_out`` for a bias); it moves its weights once
  plus its input and output activations;
* attention (flash-style, scores never materialised) costs ``4*n_q*n_kv*heads*head_dim`` FLOPs (QK^T and PV) and
  moves Q, K, V and the output once;
* norms, activations, RoPE, softmax and residual adds are left out (a few % of FLOPs, fused on a GPU);
* a stage's time is its roofline ``max(flops / F, bytes / B)`` on a :class:`Hardware` with achievable (not peak)
  throughput; latency is the sum of the stages.

Pure Python (no torch), so ``shirg-bench --model-only`` runs anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------- dims


@dataclass(frozen=True)
class BenchDims:
    """LM and SigLIP sizes (``vision_layers``: layers LaViDa keeps, i.e. after dropping the last of the tower)."""

    name: str
    d_model: int
    n_heads: int
    n_layers: int
    mlp_hidden_size: int
    vocab_size: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    vision_layers: int
    dtype: str = "float32"
    mm_hidden: int | None = None  # projector input; the SigLIP width unless given
    patch: int = 14

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def dtype_bytes(self) -> int:
        return {"float32": 4, "bfloat16": 2, "float16": 2}[self.dtype]


DIMS: dict[str, BenchDims] = {
    # the tiny checkpoint's dims (shirg_eval.model.tiny.TinyDims)
    "tiny": BenchDims("tiny", 64, 4, 2, 128, 768, 48, 96, 4, 2),
    # real widths, head_dim 128, LLaDA's mlp ratio 3, so400m's 1152-4304-16; depth cut to 2 so a CPU run takes
    # minutes. Vocab 16384 keeps the LM head near its real share of a 2-layer LM's FLOPs.
    "small": BenchDims("small", 512, 4, 2, 1536, 16384, 1152, 4304, 16, 2),
    # LaViDa-LLaDA-8B + SigLIP so400m (26 of 27 layers), bf16: GPU only when measured
    "real": BenchDims("real", 4096, 32, 32, 12288, 126464, 1152, 4304, 16, 26, "bfloat16"),
}


@dataclass(frozen=True)
class Hardware:
    name: str
    flops_per_s: float  # achievable dense matmul throughput at the model dtype
    bytes_per_s: float  # achievable memory bandwidth


HARDWARE: dict[str, Hardware] = {
    # H100 SXM: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3; ~60% / ~80% achievable
    "h100": Hardware("h100", 0.6 * 989e12, 0.8 * 3.35e12),
    # H200: the H100's arithmetic, 4.8 TB/s HBM3e; same achievable fractions
    "h200": Hardware("h200", 0.6 * 989e12, 0.8 * 4.8e12),
    # a 2-core AVX2 CPU in fp32: rough, for ordering only
    "cpu": Hardware("cpu", 6e10, 1.5e10),
}


def hardware_for(device_type: str, device_name: str = "") -> str:
    """The profile for a torch device: ``h200`` for a CUDA device named H200, ``h100`` for any other CUDA device
    (the only GPU profile besides), ``cpu`` otherwise."""
    if device_type != "cuda":
        return "cpu"
    return "h200" if "H200" in device_name.upper() else "h100"


# ---------------------------------------------------------------------------------------------- costs
@dataclass
class Cost:
    flops: float = 0.0
    bytes: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def __mul__(self, k: float) -> Cost:
        return Cost(self.flops * k, self.bytes * k)

    __rmul__ = __mul__

    def seconds(self, hw: Hardware) -> float:
        return max(self.flops / hw.flops_per_s, self.bytes / hw.bytes_per_s)


def linear_cost(n: int, d_in: int, d_out: int, elem_bytes: int, bias: bool = False) -> Cost:
    flops = 2 * n * d_in * d_out + (n * d_out if bias else 0)
    weights = d_in * d_out + (d_out if bias else 0)
    return Cost(flops, (weights + n * (d_in + d_out)) * elem_bytes)


def attention_cost(n_q: int, n_kv: int, n_heads: int, head_dim: int, elem_bytes: int,
                   kv_elem_bytes: float | None = None) -> Cost:
    kv_b = elem_bytes if kv_elem_bytes is None else kv_elem_bytes
    width = n_heads * head_dim
    return Cost(4 * n_q * n_kv * width, 2 * n_q * width * elem_bytes + 2 * n_kv * width * kv_b)


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, tokens: int, elem_bytes: float,
                   int8_scales: bool = False) -> float:
    """``2 * layers * heads * head_dim * tokens * bytes`` (+ one fp32 scale per layer/head/channel for int8)."""
    total = 2 * n_layers * n_kv_heads * head_dim * tokens * elem_bytes
    if int8_scales:
        total += 2 * n_layers * n_kv_heads * head_dim * 4
    return total


def siglip_cost(dims: BenchDims, resolution: int, views: int = 1) -> Cost:
    """SigLIP over ``views`` square views of ``resolution`` px (position embeddings interpolated above 384)."""
    n = (resolution // dims.patch) ** 2
    b, w, i = dims.dtype_bytes, dims.vision_hidden, dims.vision_intermediate
    total = linear_cost(views * n, 3 * dims.patch**2, w, b, bias=True)  # patch embedding (a strided conv)
    per_layer = (4 * linear_cost(views * n, w, w, b, bias=True)
                 + views * attention_cost(n, n, dims.vision_heads, w // dims.vision_heads, b)
                 + linear_cost(views * n, w, i, b, bias=True) + linear_cost(views * n, i, w, b, bias=True))
    return total + dims.vision_layers * per_layer


def projector_cost(dims: BenchDims, n: int) -> Cost:
    mm, d, b = dims.mm_hidden or dims.vision_hidden, dims.d_model, dims.dtype_bytes
    return linear_cost(n, mm, d, b, bias=True) + linear_cost(n, d, d, b, bias=True)


def selection_cost(dims: BenchDims, kind: str, n_in: int, n_out: int, text_tokens: int = 16) -> Cost:
    """Token selection on ``n_in`` projected tokens of width d (scoring + gather; the top-k itself is ~free)."""
    d, b = dims.d_model, dims.dtype_bytes
    if kind == "full":
        return Cost(0.0, 0.0)
    if kind == "shirg":  # cosine similarity to the question + norms + saliency, pooled scaffold, gather
        return Cost(2 * n_in * text_tokens * d + 8 * n_in * d, (3 * n_in + n_out + text_tokens) * d * b)
    # pool (lavida's 2x2 bilinear per view, pool_k's area pooling) and random: one read, one write
    return Cost(4 * n_in * d, (n_in + n_out) * d * b)


def lm_cost(dims: BenchDims, n_q: int, n_kv: int, n_logits: int, kv_elem_bytes: float | None = None) -> Cost:
    """One LLaDA pass: ``n_q`` query tokens attending to ``n_kv`` keys, LM head over ``n_logits`` positions."""
    d, m, b = dims.d_model, dims.mlp_hidden_size, dims.dtype_bytes
    per_layer = (4 * linear_cost(n_q, d, d, b) + attention_cost(n_q, n_kv, dims.n_heads, dims.head_dim, b, kv_elem_bytes)
                 + 2 * linear_cost(n_q, d, m, b) + linear_cost(n_q, m, d, b))
    return dims.n_layers * per_layer + linear_cost(n_logits, d, dims.vocab_size, b)


def lm_weight_bytes(dims: BenchDims) -> float:
    d, m = dims.d_model, dims.mlp_hidden_size
    return (dims.n_layers * (4 * d * d + 3 * d * m) + 2 * dims.vocab_size * d) * dims.dtype_bytes


def vision_weight_bytes(dims: BenchDims) -> float:
    w, i = dims.vision_hidden, dims.vision_intermediate
    mm, d = dims.mm_hidden or w, dims.d_model
    return (dims.vision_layers * (4 * w * w + 2 * w * i) + mm * d + d * d) * dims.dtype_bytes


# ---------------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Geometry:
    """What a variant feeds the stages: views and resolution, tokens before and after selection."""

    views: int
    resolution: int
    visual_tokens: int
    selection: str  # full | shirg | pool | random

    def grid_tokens(self, patch: int = 14) -> int:
        return self.views * (self.resolution // patch) ** 2


# Defaults at LaViDa's geometry: anyres 2x2 grid for a 4:3 image (5 views, 196 + 676 unpadded + 26 newlines ...
# ~980 tokens), one 384 view (729), one 672 view (48x48 = 2304), K=768 (+144 scaffold for shirg_*).
DEFAULT_GEOMETRY: dict[str, Geometry] = {
    "lavida": Geometry(5, 384, 980, "pool"),
    "lavida_384": Geometry(1, 384, 729, "full"),
    "lavida_672": Geometry(1, 672, 2304, "full"),
    "shirg_fixed": Geometry(1, 672, 912, "shirg"),
    "shirg_original": Geometry(1, 672, 912, "shirg"),  # adaptive K in {512, 768, 1024}; 768 is the middle
    "pool_k": Geometry(1, 672, 768, "pool"),
    "random_k": Geometry(1, 672, 768, "random"),
}
KV_ELEM_BYTES = {"bf16": 2, "fp16": 2, "int8": 1}


def variant_costs(dims: BenchDims, geom: Geometry, text_tokens: int = 64, gen_length: int = 32, steps: int = 30,
                  kv_dtype: str = "auto") -> dict[str, Cost]:
    """FLOPs/bytes of every stage of one answer; ``prefix`` = prompt text + visual tokens."""
    prefix = text_tokens + geom.visual_tokens
    kv_b = dims.dtype_bytes if kv_dtype == "auto" else KV_ELEM_BYTES[kv_dtype]
    step_cached = lm_cost(dims, gen_length, prefix + gen_length, gen_length, kv_b)
    if kv_dtype != "auto":  # decoded copy of the prefix written and read each step
        step_cached = step_cached + Cost(0, 2 * kv_cache_bytes(dims.n_layers, dims.n_heads, dims.head_dim, prefix,
                                                              dims.dtype_bytes))
    step_nocache = lm_cost(dims, prefix + gen_length, prefix + gen_length, gen_length)
    return {
        "vision": siglip_cost(dims, geom.resolution, geom.views),
        "projector": projector_cost(dims, geom.grid_tokens(dims.patch)),
        "selection": selection_cost(dims, geom.selection, geom.grid_tokens(dims.patch), geom.visual_tokens),
        "prefill": lm_cost(dims, prefix, prefix, 1),  # the sampler keeps only the last position's logits
        "step_cached": step_cached,
        "step_nocache": step_nocache,
        "denoise_cached": steps * step_cached,
        "denoise_nocache": steps * step_nocache,
    }


def predict(dims: BenchDims, hw: Hardware, geometry: dict[str, Geometry] | None = None, text_tokens: int = 64,
            gen_length: int = 32, steps: int = 30, kv_dtype: str = "auto") -> dict[str, dict[str, Any]]:
    """Per variant: stage FLOPs/bytes/seconds, latency with and without the prefix cache, KV bytes, memory."""
    geometry = geometry or DEFAULT_GEOMETRY
    out: dict[str, dict[str, Any]] = {}
    for name, geom in geometry.items():
        costs = variant_costs(dims, geom, text_tokens, gen_length, steps, kv_dtype)
        secs = {k: c.seconds(hw) for k, c in costs.items()}
        front = secs["vision"] + secs["projector"] + secs["selection"]
        prefix = text_tokens + geom.visual_tokens
        kv = {k: kv_cache_bytes(dims.n_layers, dims.n_heads, dims.head_dim, prefix, v, int8_scales=(k == "int8"))
              for k, v in {"model": dims.dtype_bytes, "bf16": 2, "int8": 1}.items()}
        kv_used = kv["model"] if kv_dtype == "auto" else kv["bf16" if kv_dtype in ("bf16", "fp16") else "int8"]
        # transient peak: the biggest of SigLIP's MLP activations and the prefill's SwiGLU gate+up
        act = max(geom.views * (geom.resolution // dims.patch) ** 2 * dims.vision_intermediate,
                  2 * prefix * dims.mlp_hidden_size) * dims.dtype_bytes
        out[name] = {
            "visual_tokens": geom.visual_tokens, "prefix_positions": prefix,
            "flops": {k: c.flops for k, c in costs.items()}, "bytes": {k: c.bytes for k, c in costs.items()},
            "seconds": secs,
            "latency_s": front + secs["prefill"] + secs["denoise_cached"],
            "latency_nocache_s": front + secs["denoise_nocache"],
            "cache_speedup": secs["denoise_nocache"] / (secs["prefill"] + secs["denoise_cached"]),
            "selection_share_of_vision": secs["selection"] / front if front else 0.0,
            "kv_bytes": kv,
            "memory_bytes": lm_weight_bytes(dims) + vision_weight_bytes(dims) + kv_used + act,
            "memory_beyond_weights_bytes": kv_used + act,
        }
    return out


def ratios(pred: dict[str, dict[str, Any]], baseline: str) -> dict[str, dict[str, float]]:
    base = pred[baseline]
    return {name: {"latency": p["latency_s"] / base["latency_s"],
                   "memory": p["memory_bytes"] / base["memory_bytes"],
                   "memory_beyond_weights": p["memory_beyond_weights_bytes"] / base["memory_beyond_weights_bytes"],
                   "kv": p["kv_bytes"]["model"] / base["kv_bytes"]["model"]}
            for name, p in pred.items()}


def describe(dims: BenchDims, hw: Hardware) -> dict[str, Any]:
    return {"dims": asdict(dims), "hardware": asdict(hw)}
