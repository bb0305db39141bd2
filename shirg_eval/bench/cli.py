"""``shirg-bench``: stage latencies, peak memory, visual tokens and prefix-KV bytes per variant, with the cost
model's predicted ratios beside the measured ones.

Every cell (variant x cache on/off x prefix-KV dtype) is warmed up first; the timed rounds are then interleaved
(a seeded shuffle per round by default), and each figure and each ratio is reported as median [min, max] over the
rounds. A ratio whose spread across rounds is wider than its effect is flagged NOISY. Verdicts against the
efficiency targets (PASS / MISS / UNCLEAR) are printed only at real LaViDa dims, which the targets are set for.

Examples::

    shirg-bench --dims tiny --runs 3 --warmup 1 --json bench.json
    shirg-bench --dims small                     # real widths, 2 layers each: CPU minutes
    shirg-bench --dims real --kv-dtype bf16 --kv-compare int8   # LLaDA-8B + so400m random-init bf16, CUDA only
    shirg-bench --pretrained /path/to/lavida     # a real checkpoint
    shirg-bench --model-only                     # the cost model at real dims, nothing run
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
from .interleave import ORDERS
from .tables import full_report

DEFAULT_VARIANTS = ("lavida", "lavida_384", "lavida_672", "shirg_fixed", "shirg_original", "pool_k", "random_k")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="shirg-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", choices=sorted(cm.DIMS), default="tiny",
                   help="model sizes: tiny checkpoint, small (real widths, 2 layers), real (LaViDa-8B, GPU)")
    p.add_argument("--pretrained", help="bench this checkpoint instead of random-init dims")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--baseline", default="lavida_384", help="ratios are against this variant, measured in the same run")
    p.add_argument("--runs", "--rounds", dest="runs", type=int, default=3,
                   help="timed rounds; each round runs every cell once (median and [min, max] reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs of every cell, before any timed one")
    p.add_argument("--order", choices=ORDERS, default="shuffle",
                   help="cell order within a round: seeded shuffle per round (default), round robin, or "
                        "sequential (one cell's runs back to back, for comparison only)")
    p.add_argument("--steps", type=int, default=30, help="denoising steps")
    p.add_argument("--gen-length", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=1,
                   help="documents answered together (one batched decode, as lmms_eval --batch_size)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the cached denoising step (compile=true); compile time is reported apart")
    p.add_argument("--kv-dtype", default="auto", choices=["auto", "bf16", "fp16", "int8"],
                   help="prefix-KV storage of the main cells (auto: the model dtype)")
    p.add_argument("--kv-compare", default="",
                   help="other prefix-KV storage dtypes timed for every variant, e.g. int8 (ratios vs --kv-dtype)")
    p.add_argument("--cache-off-variants", default=None,
                   help="variants also timed without the prefix cache (default: baseline and shirg_fixed)")
    p.add_argument("--random-init", action="store_true",
                   help="build random weights directly on the device in the dims' dtype (what --dims real does) "
                        "also at tiny dims, instead of the tiny checkpoint")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--hardware", choices=sorted(cm.HARDWARE), default=None,
                   help="cost-model hardware profile for predictions (default: h200 or h100 by the CUDA device's "
                        "name, cpu otherwise)")
    p.add_argument("--no-memory", action="store_true", help="skip the (untimed) peak-memory run per variant")
    p.add_argument("--json", type=Path, help="write the full results here")
    p.add_argument("--model-only", action="store_true", help="print the cost model at --dims (default real) and exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--harness-overhead", action="store_true",
                   help="time the lmms_eval command against direct model calls on the same documents and exit")
    p.add_argument("--harness-docs", type=int, default=8, help="documents for --harness-overhead")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- cost model only
def model_only(args: argparse.Namespace, explicit_dims: bool) -> dict[str, Any]:
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
def bench(args: argparse.Namespace) -> dict[str, Any]:
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
            _write_json(args.json, {**meta, **report, "status": status})

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


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    explicit_dims = "--dims" in (argv if argv is not None else sys.argv[1:])
    if args.harness_overhead:
        from .harness_overhead import measure
        from .harness_overhead import report as overhead_report

        variant = args.variants.split(",")[0] if "--variants" in (argv or sys.argv[1:]) else "shirg_fixed"
        report = measure(variant, args.harness_docs, args.pretrained)
        print(overhead_report(report))
    else:
        report = model_only(args, explicit_dims) if args.model_only else bench(args)
    if args.json:
        _write_json(args.json, report)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
