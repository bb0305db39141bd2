"""``shirg-bench`` measurements: cells (variant x configuration), interleaved rounds, spreads, paired ratios.

A *cell* is one variant under one decoding configuration: ``v`` (prefix cache on, the run's ``kv_dtype``),
``v|nocache`` (prefix cache off) and ``v|kv=int8`` (another prefix-KV storage dtype). Every cell is warmed up
before any timed run; the timed rounds are interleaved (see :mod:`.interleave`). Every ratio is taken within a
round and reported as min / median / max over the rounds, beside the cost model's prediction at the same dims
and geometry. Verdicts against the efficiency targets are given only at real LaViDa dims: the targets say
nothing about the tiny or small dims.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import cost_model as cm
from .interleave import paired_ratio, run_interleaved, spread, verdict
from .stages import MODEL_STAGES, StageTimes, VariantRunner, measure_peak_memory

# (name, op, threshold): the efficiency targets, set for LaViDa-8B at real dims
TARGETS = (
    ("shirg_fixed / lavida_384 latency", "<=", 1.35),
    ("shirg_fixed / lavida_672 latency", "<=", 0.5),
    ("prefix cache on/off speedup (30 steps)", ">=", 5.0),
    ("int8 / 16-bit prefix-KV bytes", "<=", 0.55),
)
FIGURES = (*(f"{s}_ms" for s in MODEL_STAGES), "latency_ms", "step_ms", "preprocess_ms")


@dataclass
class BenchPlan:
    variants: list[str]
    baseline: str
    cache_off: list[str] = field(default_factory=list)  # variants also timed with the prefix cache off
    kv_dtype: str = "auto"
    kv_compare: list[str] = field(default_factory=list)  # other prefix-KV storage dtypes, timed per variant
    rounds: int = 5
    warmup: int = 1
    seed: int = 0
    order: str = "shuffle"
    steps: int = 30
    gen_length: int = 32
    batch_size: int = 1
    memory: bool = True
    compile: bool = False  # compile=true for every cached cell (the no-cache cells stay eager)

    def cells(self) -> list[tuple[str, str, str]]:
        """(key, variant, mode) for every cell; mode is ``main``, ``nocache`` or a kv dtype."""
        out = []
        for v in self.variants:
            out.append((v, v, "main"))
            if v in self.cache_off:
                out.append((f"{v}|nocache", v, "nocache"))
            for kd in self.kv_compare:
                if kd != self.kv_dtype:
                    out.append((f"{v}|kv={kd}", v, kd))
        return out


def _config(plan: BenchPlan, mode: str):
    from ..model.sampler import GenerationConfig

    if mode == "nocache":
        return GenerationConfig(gen_length=plan.gen_length, steps=plan.steps, prefix_cache=False)
    kv = plan.kv_dtype if mode == "main" else mode
    return GenerationConfig(gen_length=plan.gen_length, steps=plan.steps, kv_dtype=kv, compile=plan.compile)


def times_row(t: StageTimes) -> dict[str, float]:
    """One run's figures (ms); ``step_ms`` is the median step of that run."""
    row = {f"{s}_ms": t.stages_ms[s] for s in MODEL_STAGES}
    row["latency_ms"] = t.latency_ms
    row["step_ms"] = statistics.median(t.step_ms) if t.step_ms else math.nan
    row["preprocess_ms"] = t.preprocess_ms
    return row


def run_cells(model, tokenizer, plan: BenchPlan, image, on_round=None) -> tuple[dict[str, list[StageTimes]],
                                                                                 dict[str, StageTimes]]:
    """Warm every cell, time the interleaved rounds; returns (per-cell timed runs, one warm-up run per cell)."""
    runners = {v: VariantRunner(model, tokenizer, v, seed=plan.seed) for v in plan.variants}
    warm: dict[str, StageTimes] = {}

    def cell_fn(key: str, variant: str, mode: str):
        config = _config(plan, mode)

        def fn() -> StageTimes:
            out = runners[variant].run(image, config, plan.batch_size)
            warm.setdefault(key, out)
            return out
        return fn

    cells = {key: cell_fn(key, v, mode) for key, v, mode in plan.cells()}
    raw = run_interleaved(cells, plan.rounds, plan.warmup, plan.seed, plan.order,
                          on_round=None if on_round is None else (lambda i, r: on_round(i, r, warm)))
    return raw, warm


def peak_memory(model, tokenizer, plan: BenchPlan, image) -> dict[str, dict[str, Any]]:
    """One untimed run per cell under the peak-memory probe (after all timed rounds, so it disturbs none)."""
    out = {}
    for key, v, mode in plan.cells():
        runner = VariantRunner(model, tokenizer, v, seed=plan.seed)
        config = _config(plan, mode)
        out[key] = measure_peak_memory(lambda r=runner, c=config: r.run(image, c, plan.batch_size), model.device)
    return out


def prefix_kv_bytes(model, tokenizer, baseline: str, image, seed: int = 0) -> dict[str, int]:
    """Prefix-KV bytes per storage dtype on the baseline's prompt (deterministic: one fill each)."""
    from ..model.kv_cache import fill_prefix

    with torch.no_grad():
        prompt = VariantRunner(model, tokenizer, baseline, seed=seed).prompt_embeds(image)
        return {kd: fill_prefix(model, prompt, kd)[0].nbytes() for kd in ("auto", "bf16", "int8")}


# ---------------------------------------------------------------------------------------------- cost model
def dims_of(model, label: str) -> cm.BenchDims:
    c, v = model.config, model.config.vision
    dtype = str(model.dtype).replace("torch.", "")
    return cm.BenchDims(label, c.d_model, c.n_heads, c.n_layers, c.mlp_hidden_size, c.vocab_size, v.hidden_size,
                        v.intermediate_size, v.num_attention_heads, v.num_hidden_layers,
                        dtype if dtype in ("float32", "bfloat16", "float16") else "float32", c.mm_hidden_size,
                        v.patch_size)


def is_real_dims(dims: cm.BenchDims) -> bool:
    """The dims the efficiency targets are set for: LLaDA-8B + SigLIP so400m (any label, dtype or vocab)."""
    real = cm.DIMS["real"]
    shape = ("d_model", "n_heads", "n_layers", "mlp_hidden_size", "vision_hidden", "vision_intermediate",
             "vision_layers")
    return all(getattr(dims, k) == getattr(real, k) for k in shape)


def geometry(name: str, visual_tokens: int, model) -> cm.Geometry:
    default = cm.DEFAULT_GEOMETRY.get(name, cm.Geometry(1, 672, visual_tokens, "shirg"))
    views = default.views
    if name == "lavida" and model.config.image_aspect_ratio != "anyres":
        views = 1
    return cm.Geometry(views, default.resolution, visual_tokens, default.selection)


# ---------------------------------------------------------------------------------------------- summary
def summarize(raw: dict[str, list[StageTimes]], warm: dict[str, StageTimes], plan: BenchPlan, model,
              dims_label: str, hw: cm.Hardware, memory: dict[str, dict[str, Any]] | None = None,
              kv_bytes: dict[str, int] | None = None) -> dict[str, Any]:
    """Figures (min/median/max per cell), paired ratios beside predictions, targets. Works on partial rounds."""
    rounds = min((len(r) for r in raw.values()), default=0)
    if rounds == 0:
        return {"rounds_done": 0}
    rows = {k: [times_row(t) for t in runs[:rounds]] for k, runs in raw.items()}
    figures = {k: {f: spread([r[f] for r in rs]) for f in FIGURES} for k, rs in rows.items()}

    cdims = dims_of(model, dims_label)
    first = {v: warm[v] for v in plan.variants}
    text_tokens = first[plan.baseline].prompt_positions - first[plan.baseline].n_tokens
    geom = {v: geometry(v, first[v].n_tokens, model) for v in plan.variants}
    pred = cm.predict(cdims, hw, geom, text_tokens, plan.gen_length, plan.steps, plan.kv_dtype)
    pred_kv = {kd: cm.predict(cdims, hw, geom, text_tokens, plan.gen_length, plan.steps, kd)
               for kd in plan.kv_compare if kd != plan.kv_dtype}

    def series(key: str, figure: str) -> list[float]:
        return [r[figure] for r in rows[key]]

    ratios: list[dict[str, Any]] = []

    def add(name: str, num: list[float], den: list[float], predicted: float | None, roofline: float | None,
            **extra: Any) -> None:
        stats = paired_ratio(num, den)
        ratios.append({"name": name, **stats, "predicted": predicted, "roofline": roofline,
                       "measured_over_predicted": stats["median"] / predicted if predicted else None, **extra})

    base = plan.baseline
    pairs = [(v, base) for v in plan.variants if v != base]
    for pair in (("shirg_fixed", "lavida_384"), ("shirg_fixed", "lavida_672")):  # the targets' ratios
        if set(pair) <= set(plan.variants) and pair not in pairs:
            pairs.append(pair)
    for num, den in pairs:
        add(f"{num} / {den} latency", series(num, "latency_ms"), series(den, "latency_ms"),
            pred[num]["latency_s"] / pred[den]["latency_s"],
            pred[num]["latency_roofline_s"] / pred[den]["latency_roofline_s"], kind="latency", numerator=num,
            denominator=den)
    for v in plan.variants:
        if v in plan.cache_off:
            on = [p + d for p, d in zip(series(v, "prefill_ms"), series(v, "denoise_ms"), strict=True)]
            add(f"{v} prefix cache on/off speedup", series(f"{v}|nocache", "denoise_ms"), on,
                pred[v]["cache_speedup"], pred[v]["cache_speedup_roofline"], kind="cache_speedup",
                numerator=f"{v}|nocache", denominator=v)
    for kd, pk in pred_kv.items():
        for v in plan.variants:
            add(f"{v} kv {kd} / {plan.kv_dtype} latency", series(f"{v}|kv={kd}", "latency_ms"),
                series(v, "latency_ms"), pk[v]["latency_s"] / pred[v]["latency_s"],
                pk[v]["latency_roofline_s"] / pred[v]["latency_roofline_s"], kind="kv_latency",
                numerator=f"{v}|kv={kd}", denominator=v)

    variants: dict[str, dict[str, Any]] = {}
    for v in plan.variants:
        t = first[v]
        row: dict[str, Any] = {f: figures[v][f]["median"] for f in FIGURES}
        row.update({"n_steps": len(t.step_ms), "visual_tokens": t.n_tokens, "prompt_positions": t.prompt_positions,
                    "prefix_kv_bytes": t.prefix_kv_bytes, "prefix_kv_mb": t.prefix_kv_bytes / 2**20,
                    "figures": figures[v], "runs_latency_ms": series(v, "latency_ms")})
        front = row["vision_ms"] + row["projector_ms"] + row["selection_ms"]
        row["selection_share_of_vision"] = row["selection_ms"] / front if front else 0.0
        lat = next((r for r in ratios if r["kind"] == "latency" and r["numerator"] == v and r["denominator"] == base),
                   None)
        row["latency_ratio"] = 1.0 if v == base else lat["median"]
        row["predicted_latency_ratio"] = pred[v]["latency_s"] / pred[base]["latency_s"]
        if f"{v}|nocache" in figures:
            row["nocache"] = figures[f"{v}|nocache"]
            row["nocache_denoise_ms"] = figures[f"{v}|nocache"]["denoise_ms"]["median"]
            row["cache_speedup"] = next(r["median"] for r in ratios
                                        if r["kind"] == "cache_speedup" and r["denominator"] == v)
        for kd in pred_kv:
            row[f"kv_{kd}"] = figures[f"{v}|kv={kd}"]
        if memory:
            row["peak_memory"] = memory.get(v)
            row["peak_memory_by_cell"] = {k: m for k, m in memory.items() if k == v or k.startswith(f"{v}|")}
        row["predicted_ms"] = {s: pred[v]["seconds"][s] * 1e3 for s in ("vision", "projector", "selection",
                                                                        "prefill", "denoise_cached",
                                                                        "denoise_nocache")}
        row["predicted_ms"]["latency"] = pred[v]["latency_s"] * 1e3
        row["predicted_ms"]["latency_roofline"] = pred[v]["latency_roofline_s"] * 1e3
        row["predicted_ms"]["denoise_cached_roofline"] = pred[v]["seconds_roofline"]["denoise_cached"] * 1e3
        variants[v] = row
    if memory and base in memory and memory[base]["delta_gb"] > 0:
        pr = cm.ratios(pred, base)
        for v, row in variants.items():
            if memory.get(v):
                row["memory_delta_ratio"] = memory[v]["delta_gb"] / memory[base]["delta_gb"]
                row["predicted_memory_beyond_weights_ratio"] = pr[v]["memory_beyond_weights"]

    real = is_real_dims(cdims)
    return {
        "rounds_done": rounds, "dims": dims_label, "real_dims": real, "baseline": base,
        "variants": variants, "ratios": ratios, "noisy_ratios": [r["name"] for r in ratios if r["noisy"]],
        "cells": {k: figures[k] for k in figures}, "prefix_kv_bytes_by_dtype": kv_bytes,
        "targets": targets(ratios, kv_bytes, pred, real, dims_label),
        "cost_model": {**cm.describe(cdims, hw), "predicted": pred,
                       "predicted_kv": pred_kv, "predicted_ratios": cm.ratios(pred, base)},
        "plan": asdict(plan),
    }


def targets(ratios: list[dict[str, Any]], kv_bytes: dict[str, int] | None, pred: dict[str, dict[str, Any]],
            real: bool, dims_label: str) -> list[dict[str, Any]]:
    """The four efficiency targets: measured (min/median/max) beside predicted; a verdict only at real dims."""
    by_name = {r["name"]: r for r in ratios}
    found: list[dict[str, Any] | None] = [by_name.get("shirg_fixed / lavida_384 latency"),
                                          by_name.get("shirg_fixed / lavida_672 latency"), None, None]
    labels = [t[0] for t in TARGETS]
    speedups = [r for r in ratios if r["kind"] == "cache_speedup"]
    if speedups:
        worst = min(speedups, key=lambda r: r["median"])
        found[2] = worst
        labels[2] = f"{labels[2]} [{worst['denominator']}, worst of {sorted(r['denominator'] for r in speedups)}]"
    if kv_bytes:
        b = kv_bytes["int8"] / kv_bytes["bf16"]
        sixteen = next(iter(pred.values()))["kv_bytes"]
        found[3] = {**spread([b]), "predicted": sixteen["int8"] / sixteen["bf16"], "noisy": False}
    out = []
    for (_, op, thr), label, r in zip(TARGETS, labels, found, strict=True):
        if r is None:
            status = "not measured"
        elif real:
            status = verdict(r, op, thr)
        else:
            status = f"not judged ({dims_label} dims)"
        out.append({"target": label, "threshold": f"{op} {thr}", "dims": dims_label, "status": status,
                    "measured": None if r is None else r["median"],
                    "min": None if r is None else r["min"], "max": None if r is None else r["max"],
                    "predicted": None if r is None else r["predicted"]})
    return out
