"""The runs behind ``shirg-bench``: the cost model's table alone, or the measured cells with predictions beside them.

``args`` is the command's parsed namespace (``shirg_eval/cli/bench.py`` lists every option and its meaning).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import cost_model as cm
from .tables import full_report

DEFAULT_VARIANTS = ("lavida", "lavida_384", "lavida_672", "shirg_fixed", "shirg_original", "pool_k", "random_k")


# ---------------------------------------------------------------------------------------------- cost model only
def model_only(args: argparse.Namespace, explicit_dims: bool) -> dict[str, Any]:
    """Print the cost model's predictions at ``--dims`` (LaViDa's real dims unless given) and return them."""
    dims = cm.DIMS[args.dims if explicit_dims else "real"]
    hw = cm.HARDWARE[args.hardware or ("h100" if dims.name == "real" else "cpu")]
    variants = [v for v in args.variants.split(",") if v in cm.DEFAULT_GEOMETRY]
    geometry = {v: cm.DEFAULT_GEOMETRY[v] for v in variants}
    if args.baseline not in geometry:
        geometry[args.baseline] = cm.DEFAULT_GEOMETRY[args.baseline]
    pred = cm.predict(dims, hw, geometry, gen_length=args.gen_length, steps=args.steps, kv_dtype=args.kv_dtype)
    rat = cm.ratios(pred, args.baseline)
    rows = []
    for name, p in pred.items():
        f, s = p["flops"], p["seconds"]
        rows.append([name, p["visual_tokens"], f"{f['vision'] / 1e12:.3f}", f"{f['projector'] / 1e12:.3f}",
                     f"{f['selection'] / 1e9:.3f}", f"{f['prefill'] / 1e12:.2f}", f"{f['step_cached'] / 1e12:.3f}",
                     f"{f['step_nocache'] / 1e12:.2f}", f"{(p['bytes']['step_cached'] + p['bytes']['step_kv']) / 1e9:.2f}",
                     f"{p['kv_bytes']['model'] / 2**20:.0f}", f"{p['kv_bytes']['int8'] / 2**20:.0f}",
                     f"{p['latency_s'] * 1e3:.1f}", f"{s['denoise_cached'] * 1e3:.1f}", f"{p['cache_speedup']:.2f}",
                     f"{rat[name]['latency']:.3f}", f"{p['latency_roofline_s'] * 1e3:.1f}",
                     f"{p['cache_speedup_roofline']:.2f}", f"{rat[name]['latency_roofline']:.3f}",
                     f"{rat[name]['memory']:.3f}", f"{rat[name]['kv']:.2f}"])
    over = f"measured overheads: {hw.overheads.source}" if hw.overheads else "roofline only"
    print(f"cost model at {dims.name} dims ({dims.dtype}), hardware profile {hw.name} ({over}), {args.steps} steps, "
          f"gen_length {args.gen_length}, 64 text positions; ratios vs {args.baseline}; roof = roofline alone")
    print(tabulate(rows, headers=["variant", "vis tok", "vision TF", "proj TF", "select GF", "prefill TF",
                                  "step(cache) TF", "step(no cache) TF", "step(cache) GB", "KV MB", "KV int8 MB",
                                  "pred lat ms", "denoise ms", "cache x", "lat ratio", "roof lat ms", "roof cache x",
                                  "roof lat ratio", "mem ratio", "KV ratio"]))
    return {"mode": "model_only", **cm.describe(dims, hw), "baseline": args.baseline, "predicted": pred,
            "predicted_ratios": rat}


# ---------------------------------------------------------------------------------------------- measured
def measure_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Time every cell in interleaved rounds, print the tables, and return the report (also written per round)."""
    import torch

    from .measure import BenchPlan, peak_memory, prefix_kv_bytes, run_cells, summarize
    from .stages import bench_image, build_bench_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    variants = [v for v in args.variants.split(",") if v]
    if args.baseline not in variants:
        variants.insert(0, args.baseline)  # ratios need the baseline measured in the same rounds
    cache_off = args.cache_off_variants.split(",") if args.cache_off_variants else [args.baseline, "shirg_fixed"]
    plan = BenchPlan(variants, args.baseline, [v for v in variants if v in cache_off], args.kv_dtype,
                     [k for k in (args.kv_compare or "").split(",") if k], args.runs, args.warmup, args.seed,
                     args.order, args.steps, args.gen_length, args.batch_size, not args.no_memory, args.compile)
    model, tokenizer, model_desc = build_bench_model(args.dims, device, args.pretrained, args.seed,
                                                     random_init=args.random_init)
    dims_label = "checkpoint" if args.pretrained else args.dims
    image = bench_image()
    dev = model.device
    hw = cm.HARDWARE[args.hardware or cm.hardware_for(dev.type, _device_name(dev))]
    meta = {
        "mode": "measured", "dims": dims_label, "model": model_desc, "device": str(dev),
        "device_name": _device_name(dev), "dtype": str(model.dtype).replace("torch.", ""),
        "machine": platform.machine(), "torch": torch.__version__, "baseline": args.baseline,
        "config": {"runs": args.runs, "warmup": args.warmup, "order": args.order, "seed": args.seed,
                   "steps": args.steps, "gen_length": args.gen_length, "batch_size": args.batch_size,
                   "compile": args.compile, "kv_dtype": args.kv_dtype, "kv_compare": plan.kv_compare,
                   "cache_off": plan.cache_off,
                   "timer": "cuda events" if dev.type == "cuda" else "perf_counter (synchronised)"},
    }
    n_cells = len(plan.cells())
    print(f"shirg-bench: {model_desc} on {dev} ({meta['device_name']}), {n_cells} cells x {args.runs} interleaved "
          f"rounds ({args.order}) after {args.warmup} warm-up each, {args.steps} steps, gen {args.gen_length}, "
          f"kv {args.kv_dtype}", file=sys.stderr)

    def save(report: dict[str, Any], status: str) -> None:
        if args.json:  # written after every round: a run stopped by a time limit keeps what it measured
            write_json(args.json, {**meta, **report, "status": status})

    def on_round(i: int, raw, warm) -> None:
        print(f"  round {i + 1}/{args.runs} done", file=sys.stderr)
        save(summarize(raw, warm, plan, model, dims_label, hw), f"partial: {i + 1} of {args.runs} rounds")

    raw, warm = run_cells(model, tokenizer, plan, image, on_round=on_round)
    memory = peak_memory(model, tokenizer, plan, image) if plan.memory else None
    kv_bytes = prefix_kv_bytes(model, tokenizer, args.baseline, image, args.seed)
    report = {**meta, **summarize(raw, warm, plan, model, dims_label, hw, memory, kv_bytes), "status": "complete"}
    if args.compile:  # frames compiled, graph breaks, recompiles, shapes and compile seconds of the whole run
        from ..model.compiled import COMPILE_STATS

        report["compile_stats"] = COMPILE_STATS.as_dict()
    save(report, "complete")
    print("\n" + full_report(report))
    return report


def _device_name(dev) -> str:
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` through a temporary file, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)
