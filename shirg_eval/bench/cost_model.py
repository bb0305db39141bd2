"""Analytic cost model: FLOPs and bytes per stage, KV-cache sizes, predicted latency/memory ratios.

Counting conventions (stated so the numbers can be checked by hand):

* a Linear over ``n`` tokens costs ``2*n*d_in*d_out`` FLOPs (+ ``n*d_out`` for a bias); it moves its weights once
  plus its input and output activations;
* attention (flash-style, scores never materialised) costs ``4*n_q*n_kv*heads*head_dim`` FLOPs (QK^T and PV) and
  moves Q, K, V and the output once;
* norms, activations, RoPE, softmax and residual adds are left out (a few % of FLOPs, fused on a GPU);
* a stage's *roofline* time is ``max(flops / F, bytes / B)`` on a :class:`Hardware` with achievable (not peak)
  throughput; latency is the sum of the stages;
* on a GPU profile with measured :class:`Overheads` (h100, h200), a stage's *predicted* time also has a floor: the
  host time eager PyTorch needs to issue its kernels at batch 1 (Python + launches, ~0.78 ms per LLaDA layer per
  forward on the 2026-11-27 H200 run), which the GPU waits out when its own work is shorter. The roofline stays
  in every prediction (``seconds_roofline``, ``latency_roofline_s``) beside it; docs/BENCHMARKS.md has the fit.

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
class Overheads:
    """What eager PyTorch at batch 1 adds to the roofline, measured on one card (docs/BENCHMARKS.md).

    A stage's time is ``(gpu ** p + floor ** p) ** (1 / p)``: ``gpu`` its roofline at the matmul throughput
    reached, ``floor`` the host time to issue its kernels. The host runs ahead of the GPU while the GPU is busier
    and the GPU idles while the host is slower; ``p`` says how sharply one takes over from the other (p -> inf
    is a plain max). Every number is fitted on the measured cells named beside it.
    """

    source: str
    flops_per_s: float  # dense throughput reached by the GPU-bound cells (prefill, no-cache steps), at the dtype
    lm_layer_s: float  # host floor per LLaDA layer per forward, incl. its share of embedding, LM head and sampler
    vision_layer_s: float  # host floor per SigLIP encoder layer
    vision_fixed_s: float  # per SigLIP call: patch embedding, pixel upload, hidden-state outputs
    pos_interp_s: float  # bicubic position-embedding interpolation, views above the tower's native 384 px
    int8_layer_s: float  # int8 prefix: its quantise / dequantise kernels, per layer per forward
    overlap_p: float

    def combine(self, gpu_s: float, floor_s: float) -> float:
        if floor_s <= 0.0:
            return gpu_s
        p = self.overlap_p
        return (gpu_s**p + floor_s**p) ** (1.0 / p)


# NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130, transformers 5.17.0, 2026-11-27: real dims, random init, bf16
# (docs/benchmarks/h200-2026-11-27/). lm_layer_s: median of the four variants' cache-on step medians (24.84 ms:
# 24.32 / 25.35 / 25.99 / 24.22, prefix 833..2408 positions alike) / 32 layers. vision_layer_s: the 26-layer so400m
# tower at 672 px minus its embeddings, per layer (selection_bench). vision_fixed_s, pos_interp_s: the vision stage
# at 384 px (12.52 ms) and 672 px (17.5 ms) less 26 layers. flops_per_s and overlap_p: least squares in log time
# over the 12 LM cells (prefill, cache-on and no-cache step of each variant), every one within 4.5%.
# int8_layer_s: the mean int8 - bf16 cache-on step difference (2.37 ms) / 32.
H200_EAGER_2026_11 = Overheads("H200 2026-11-27, eager torch 2.11, batch 1", 0.49 * 989e12, 24.84e-3 / 32,
                               0.3473e-3, 3.49e-3, 4.96e-3, 2.37e-3 / 32, 6.0)


@dataclass(frozen=True)
class Hardware:
    name: str
    flops_per_s: float  # achievable dense matmul throughput at the model dtype (the roofline's assumption)
    bytes_per_s: float  # achievable memory bandwidth
    overheads: Overheads | None = None  # measured floors; None: the roofline alone

    def stage_seconds(self, costs: list[Cost], floor_s: float) -> float:
        """The predicted time of a stage whose ``costs`` run one after another (a matmul block, then elementwise
        copies): each one's roofline, summed; with measured overheads, at the measured throughput and floored."""
        if self.overheads is None:
            return sum(c.seconds(self) for c in costs)
        o = self.overheads
        gpu = sum(max(c.flops / o.flops_per_s, c.bytes / self.bytes_per_s) for c in costs)
        return o.combine(gpu, floor_s)


HARDWARE: dict[str, Hardware] = {
    # H100 SXM: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3; roofline at ~60% / ~80% achievable. Overheads: the H200's,
    # an estimate: same arithmetic (the matmul throughput carries over), and the host floor is the CPU's and the
    # software's, not the GPU's -- it holds for an H100 host as fast as the H200's; unmeasured.
    "h100": Hardware("h100", 0.6 * 989e12, 0.8 * 3.35e12, H200_EAGER_2026_11),
    # H200: the H100's arithmetic, 4.8 TB/s HBM3e; same achievable fractions; overheads measured on it
    "h200": Hardware("h200", 0.6 * 989e12, 0.8 * 4.8e12, H200_EAGER_2026_11),
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
NATIVE_RESOLUTION = 384  # SigLIP's trained size: larger views interpolate its position embeddings every call


CACHES = ("static", "concat")  # the static prefix buffer (today's), the concatenating PrefixCache (until 2026-12)


def prefix_traffic_bytes(dims: BenchDims, prefix: int, kv_dtype: str = "auto", cache: str = "static",
                         gen_length: int = 32) -> tuple[float, float]:
    """Bytes the prefix cache moves besides attention's own read of the keys/values: (once per answer: storing
    them, and for ``static`` filling the working buffer; every cached step).

    ``static`` (:class:`~shirg_eval.model.kv_cache.PrefixCache` today): the stored prefix is decoded once into a
    ``prefix + canvas`` buffer (the copy in: 2 x model bytes per element; int8 decodes on the way, ``codes.float()``,
    ``* scale``, ``.to(dtype)``: 17 + model bytes) and every step writes only its canvas keys/values into the buffer
    (2 x model bytes per canvas element). ``concat`` (the eager cache the 2026-11-27 H200 run measured): every step
    decoded the stored prefix (int8: 17 + model bytes per element) and handed attention ``cat(prefix, step)``
    (reads the prefix, writes the joined tensor: 2 x model bytes). Either way int8 quantises at the fill
    (``x.float()``, ``abs``, ``amax``, ``/ scale``, ``round``, ``clamp_``, ``.to(int8)``: model bytes + 45), another
    16-bit storage casts once each way, and attention reads the decoded prefix in the model's dtype, not the stored
    codes (no fused int8 kernel).
    """
    if cache not in CACHES:
        raise ValueError(f"cache {cache!r} is not one of {CACHES}")
    b = dims.dtype_bytes
    per_position = 2 * dims.n_layers * dims.n_heads * dims.head_dim
    elems = per_position * prefix
    same = kv_dtype in ("auto", {"bfloat16": "bf16", "float16": "fp16"}.get(dims.dtype))
    if kv_dtype == "int8":
        store, decode = elems * (b + 45), elems * (17 + b)
    elif same:
        store, decode = 0.0, 0.0
    else:
        store, decode = elems * (b + KV_ELEM_BYTES[kv_dtype]), elems * (KV_ELEM_BYTES[kv_dtype] + b)
    if cache == "concat":
        return store, decode + elems * 2 * b
    return store + decode + elems * 2 * b, per_position * gen_length * 2 * b


def variant_costs(dims: BenchDims, geom: Geometry, text_tokens: int = 64, gen_length: int = 32, steps: int = 30,
                  kv_dtype: str = "auto", cache: str = "static") -> dict[str, Cost]:
    """FLOPs/bytes of every stage of one answer; ``prefix`` = prompt text + visual tokens. ``prefill_kv`` and
    ``step_kv`` are the prefix cache's own copies (:func:`prefix_traffic_bytes`), run after the LM's kernels."""
    prefix = text_tokens + geom.visual_tokens
    fill, per_step = prefix_traffic_bytes(dims, prefix, kv_dtype, cache, gen_length)
    step_cached = lm_cost(dims, gen_length, prefix + gen_length, gen_length)
    step_nocache = lm_cost(dims, prefix + gen_length, prefix + gen_length, gen_length)
    return {
        "vision": siglip_cost(dims, geom.resolution, geom.views),
        "projector": projector_cost(dims, geom.grid_tokens(dims.patch)),
        "selection": selection_cost(dims, geom.selection, geom.grid_tokens(dims.patch), geom.visual_tokens),
        "prefill": lm_cost(dims, prefix, prefix, 1),  # the sampler keeps only the last position's logits
        "prefill_kv": Cost(0, fill),
        "step_cached": step_cached,
        "step_kv": Cost(0, per_step),
        "step_nocache": step_nocache,
        "denoise_cached": steps * (step_cached + Cost(0, per_step)),
        "denoise_nocache": steps * step_nocache,
    }


def host_floors(dims: BenchDims, geom: Geometry, o: Overheads, kv_dtype: str = "auto", cache: str = "static"
                ) -> dict[str, float]:
    """Host floor per stage (per forward for the steps); projector and selection have none measured (0.2-2.3 ms).

    int8's quantise kernels are the prefill's; its decode kernels ran every step with the ``concat`` cache and run
    once per answer with the ``static`` one (counted with the prefill)."""
    lm = dims.n_layers * o.lm_layer_s
    int8 = dims.n_layers * o.int8_layer_s if kv_dtype == "int8" else 0.0
    prefill = lm + int8
    cached = lm + (int8 if cache == "concat" else 0.0)
    vision = (dims.vision_layers * o.vision_layer_s + o.vision_fixed_s
              + (o.pos_interp_s if geom.resolution > NATIVE_RESOLUTION else 0.0))
    return {"vision": vision, "projector": 0.0, "selection": 0.0, "prefill": prefill, "step_cached": cached,
            "step_nocache": lm}


def _timings(secs: dict[str, float], steps: int) -> dict[str, float]:
    front = secs["vision"] + secs["projector"] + secs["selection"]
    denoise_cached, denoise_nocache = steps * secs["step_cached"], steps * secs["step_nocache"]
    return {"denoise_cached": denoise_cached, "denoise_nocache": denoise_nocache,
            "latency_s": front + secs["prefill"] + denoise_cached, "latency_nocache_s": front + denoise_nocache,
            "cache_speedup": denoise_nocache / (secs["prefill"] + denoise_cached),
            "selection_share_of_vision": secs["selection"] / front if front else 0.0}


def predict(dims: BenchDims, hw: Hardware, geometry: dict[str, Geometry] | None = None, text_tokens: int = 64,
            gen_length: int = 32, steps: int = 30, kv_dtype: str = "auto", cache: str = "static"
            ) -> dict[str, dict[str, Any]]:
    """Per variant: stage FLOPs/bytes/seconds, latency with and without the prefix cache, KV bytes, memory.

    ``seconds`` / ``latency_s`` / ``cache_speedup`` are the prediction (with the profile's measured overheads, if
    it has them); ``seconds_roofline`` / ``latency_roofline_s`` / ``cache_speedup_roofline`` the roofline alone.
    ``regime`` says what a prediction assumes: the profile's host floors (measured eager, batch 1, on the card named)
    or the roofline alone, and the prefix cache (``static`` today, ``concat`` for runs before it). No compiled or
    CUDA-graph profile is measured yet: a compiled step is predicted as eager.
    """
    geometry = geometry or DEFAULT_GEOMETRY
    stages = ("vision", "projector", "selection", "prefill", "step_cached", "step_nocache")
    out: dict[str, dict[str, Any]] = {}
    for name, geom in geometry.items():
        costs = variant_costs(dims, geom, text_tokens, gen_length, steps, kv_dtype, cache)
        floors = host_floors(dims, geom, hw.overheads, kv_dtype, cache) if hw.overheads else dict.fromkeys(stages, 0.0)
        serial = {k: [costs[k]] for k in stages}
        serial["prefill"].append(costs["prefill_kv"])
        serial["step_cached"].append(costs["step_kv"])
        roof = {k: sum(c.seconds(hw) for c in serial[k]) for k in stages}
        secs = {k: hw.stage_seconds(serial[k], floors[k]) for k in stages}
        t, t_roof = _timings(secs, steps), _timings(roof, steps)
        secs.update(denoise_cached=t["denoise_cached"], denoise_nocache=t["denoise_nocache"])
        roof.update(denoise_cached=t_roof["denoise_cached"], denoise_nocache=t_roof["denoise_nocache"])
        prefix = text_tokens + geom.visual_tokens
        kv = {k: kv_cache_bytes(dims.n_layers, dims.n_heads, dims.head_dim, prefix, v, int8_scales=(k == "int8"))
              for k, v in {"model": dims.dtype_bytes, "bf16": 2, "int8": 1}.items()}
        kv_used = kv["model"] if kv_dtype == "auto" else kv["bf16" if kv_dtype in ("bf16", "fp16") else "int8"]
        # transient peak: the biggest of SigLIP's MLP activations and the prefill's SwiGLU gate+up
        act = max(geom.views * (geom.resolution // dims.patch) ** 2 * dims.vision_intermediate,
                  2 * prefix * dims.mlp_hidden_size) * dims.dtype_bytes
        out[name] = {
            "regime": f"{hw.overheads.source if hw.overheads else 'roofline only'}; prefix cache {cache}",
            "visual_tokens": geom.visual_tokens, "prefix_positions": prefix,
            "flops": {k: c.flops for k, c in costs.items()}, "bytes": {k: c.bytes for k, c in costs.items()},
            "seconds": secs, "seconds_roofline": roof, "host_floor_s": floors,
            "latency_s": t["latency_s"], "latency_nocache_s": t["latency_nocache_s"],
            "cache_speedup": t["cache_speedup"], "selection_share_of_vision": t["selection_share_of_vision"],
            "latency_roofline_s": t_roof["latency_s"], "latency_nocache_roofline_s": t_roof["latency_nocache_s"],
            "cache_speedup_roofline": t_roof["cache_speedup"],
            "kv_bytes": kv,
            "memory_bytes": lm_weight_bytes(dims) + vision_weight_bytes(dims) + kv_used + act,
            "memory_beyond_weights_bytes": kv_used + act,
        }
    return out


def ratios(pred: dict[str, dict[str, Any]], baseline: str) -> dict[str, dict[str, float]]:
    base = pred[baseline]
    return {name: {"latency": p["latency_s"] / base["latency_s"],
                   "latency_roofline": p["latency_roofline_s"] / base["latency_roofline_s"],
                   "memory": p["memory_bytes"] / base["memory_bytes"],
                   "memory_beyond_weights": p["memory_beyond_weights_bytes"] / base["memory_beyond_weights_bytes"],
                   "kv": p["kv_bytes"]["model"] / base["kv_bytes"]["model"]}
            for name, p in pred.items()}


def describe(dims: BenchDims, hw: Hardware) -> dict[str, Any]:
    return {"dims": asdict(dims), "hardware": asdict(hw)}
