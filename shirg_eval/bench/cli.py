"""``shirg-bench``: stage latencies, peak memory, visual tokens and prefix-KV bytes per variant, with the cost
model's predicted ratios beside the measured ones and PASS/MISS against the efficiency targets.

Examples::

    shirg-bench --dims tiny --runs 3 --warmup 1 --json bench.json
    shirg-bench --dims small                     # real widths, 2 layers each: CPU minutes
    shirg-bench --dims real                      # LLaDA-8B + so400m random-init bf16, CUDA only
    shirg-bench --pretrained /path/to/lavida     # a real checkpoint
    shirg-bench --model-only                     # the cost model at real dims, nothing run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import cost_model as cm

DEFAULT_VARIANTS = ("lavida", "lavida_384", "lavida_672", "shirg_fixed", "shirg_original", "pool_k", "random_k")
# (name, numerator, denominator, threshold): measured ratio <= threshold, except the cache speedup (>=)
TARGETS = (
    ("shirg_fixed / lavida_384 latency", "<=", 1.35),
    ("shirg_fixed / lavida_672 latency", "<=", 0.5),
    ("prefix cache on/off speedup (30 steps)", ">=", 5.0),
    ("int8 / 16-bit prefix-KV bytes", "<=", 0.55),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="shirg-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", choices=sorted(cm.DIMS), default="tiny",
                   help="model sizes: tiny checkpoint, small (real widths, 2 layers), real (LaViDa-8B, GPU)")
    p.add_argument("--pretrained", help="bench this checkpoint instead of random-init dims")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--baseline", default="lavida_384", help="ratios are against this variant, measured in the same run")
    p.add_argument("--runs", type=int, default=3, help="timed runs per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per variant")
    p.add_argument("--steps", type=int, default=30, help="denoising steps")
    p.add_argument("--gen-length", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=1, help="views per vision batch multiplier (decoding is batch 1)")
    p.add_argument("--kv-dtype", default="auto", choices=["auto", "bf16", "fp16", "int8"])
    p.add_argument("--cache-off-variants", default=None,
                   help="variants also timed without the prefix cache (default: baseline and shirg_fixed)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--hardware", choices=sorted(cm.HARDWARE), default=None,
                   help="cost-model hardware profile for predictions (default: h100 on cuda, cpu otherwise)")
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
                     f"{f['step_nocache'] / 1e12:.2f}", f"{p['bytes']['step_cached'] / 1e9:.2f}",
                     f"{p['kv_bytes']['model'] / 2**20:.0f}", f"{p['kv_bytes']['int8'] / 2**20:.0f}",
                     f"{p['latency_s'] * 1e3:.1f}", f"{s['denoise_cached'] * 1e3:.1f}", f"{p['cache_speedup']:.2f}",
                     f"{rat[name]['latency']:.3f}", f"{rat[name]['memory']:.3f}", f"{rat[name]['kv']:.2f}"])
    print(f"cost model at {dims.name} dims ({dims.dtype}), hardware profile {hw.name}, {args.steps} steps, "
          f"gen_length {args.gen_length}, 64 text positions; ratios vs {args.baseline}")
    print(tabulate(rows, headers=["variant", "vis tok", "vision TF", "proj TF", "select GF", "prefill TF",
                                  "step(cache) TF", "step(no cache) TF", "step(cache) GB", "KV MB", "KV int8 MB",
                                  "pred lat ms", "denoise ms", "cache x", "lat ratio", "mem ratio", "KV ratio"]))
    return {"mode": "model_only", **cm.describe(dims, hw), "baseline": args.baseline, "predicted": pred,
            "predicted_ratios": rat}


# ---------------------------------------------------------------------------------------------- measured
def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..model.kv_cache import fill_prefix
    from ..model.sampler import GenerationConfig
    from .stages import VariantRunner, bench_image, build_bench_model, measure_peak_memory, median_times

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    variants = [v for v in args.variants.split(",") if v]
    if args.baseline not in variants:
        variants.insert(0, args.baseline)  # ratios need the baseline measured in the same run
    cache_off = set((args.cache_off_variants or f"{args.baseline},shirg_fixed").split(",")) & set(variants)
    model, tokenizer, model_desc = build_bench_model(args.dims, device, args.pretrained, args.seed)
    dims_label = "checkpoint" if args.pretrained else args.dims
    image = bench_image()
    config = GenerationConfig(gen_length=args.gen_length, steps=args.steps, kv_dtype=args.kv_dtype)
    config_off = GenerationConfig(gen_length=args.gen_length, steps=args.steps, prefix_cache=False)
    dev = model.device
    print(f"shirg-bench: {model_desc} on {dev} ({platform.processor() or platform.machine()}), "
          f"{args.runs} runs after {args.warmup} warm-up, {args.steps} steps, gen {args.gen_length}, "
          f"batch {args.batch_size}, kv {args.kv_dtype}", file=sys.stderr)

    results: dict[str, dict[str, Any]] = {}
    for name in variants:
        runner = VariantRunner(model, tokenizer, name, seed=args.seed)
        for _ in range(args.warmup):
            runner.run(image, config, args.batch_size)
        runs = [runner.run(image, config, args.batch_size) for _ in range(args.runs)]
        med = median_times(runs)
        front = med["vision_ms"] + med["projector_ms"] + med["selection_ms"]
        row: dict[str, Any] = {
            **med, "visual_tokens": runs[0].n_tokens, "prompt_positions": runs[0].prompt_positions,
            "prefix_kv_bytes": runs[0].prefix_kv_bytes, "prefix_kv_mb": runs[0].prefix_kv_bytes / 2**20,
            "selection_share_of_vision": med["selection_ms"] / front if front else 0.0,
            "runs_latency_ms": [r.latency_ms for r in runs],
        }
        if name in cache_off:
            if dev.type == "cuda":  # new shapes pick new kernels: one untimed no-cache run first
                runner.run(image, config_off, args.batch_size)
            off = [runner.run(image, config_off, args.batch_size) for _ in range(max(1, min(args.runs, 2)))]
            row["nocache_denoise_ms"] = statistics.median(r.stages_ms["denoise"] for r in off)
            row["nocache_latency_ms"] = statistics.median(r.latency_ms for r in off)
            # on/off over the whole decode: the cache's own fill counts against it
            row["cache_speedup"] = row["nocache_denoise_ms"] / (med["prefill_ms"] + med["denoise_ms"])
        if not args.no_memory:
            row["peak_memory"] = measure_peak_memory(lambda r=runner: r.run(image, config, args.batch_size), dev)
        results[name] = row
        print(f"  {name}: {row['latency_ms']:.1f} ms, {row['visual_tokens']} visual tokens", file=sys.stderr)

    # prefix-KV bytes per storage dtype, on the baseline's prompt (bytes are deterministic: one fill each)
    with torch.no_grad():
        runner = VariantRunner(model, tokenizer, args.baseline, seed=args.seed)
        from ..model.prompting import build_prompt_ids

        views = runner.path.prepare(image)
        embeds = runner._select(model.project(model.encode_views(views.pixel_values)), views,
                                torch.Generator(device=dev).manual_seed(args.seed))
        prompt = model.embed_prompt(build_prompt_ids(tokenizer, runner.question), embeds)
        kv_bytes = {kd: fill_prefix(model, prompt, kd)[0].nbytes() for kd in ("auto", "bf16", "int8")}

    # the cost model at the same dims and the measured geometry (token counts, prompt length)
    hw = cm.HARDWARE[args.hardware or ("h100" if dev.type == "cuda" else "cpu")]
    cdims = _dims_of(model, args.dims, dims_label)
    text_tokens = results[args.baseline]["prompt_positions"] - results[args.baseline]["visual_tokens"]
    geometry = {n: _geometry(n, results[n]["visual_tokens"], model) for n in variants}
    pred = cm.predict(cdims, hw, geometry, text_tokens, args.gen_length, args.steps, args.kv_dtype)
    pred_ratios = cm.ratios(pred, args.baseline)
    base = results[args.baseline]
    for name, row in results.items():
        row["latency_ratio"] = row["latency_ms"] / base["latency_ms"]
        row["predicted_latency_ratio"] = pred_ratios[name]["latency"]
        row["kv_ratio"] = row["prefix_kv_bytes"] / base["prefix_kv_bytes"] if base["prefix_kv_bytes"] else None
        row["predicted_kv_ratio"] = pred_ratios[name]["kv"]
        if "peak_memory" in row and "peak_memory" in base and base["peak_memory"]["delta_gb"] > 0:
            row["memory_delta_ratio"] = row["peak_memory"]["delta_gb"] / base["peak_memory"]["delta_gb"]
            row["predicted_memory_beyond_weights_ratio"] = pred_ratios[name]["memory_beyond_weights"]

    targets = _targets(results, kv_bytes, dims_label, pred)
    report = {
        "mode": "measured", "dims": dims_label, "model": model_desc, "device": str(dev),
        "dtype": str(model.dtype).replace("torch.", ""), "machine": platform.machine(),
        "torch": torch.__version__, "baseline": args.baseline,
        "config": {"runs": args.runs, "warmup": args.warmup, "steps": args.steps, "gen_length": args.gen_length,
                   "batch_size": args.batch_size, "kv_dtype": args.kv_dtype,
                   "timer": "cuda events" if dev.type == "cuda" else "perf_counter (synchronised)"},
        "variants": results, "prefix_kv_bytes_by_dtype": kv_bytes, "targets": targets,
        "cost_model": {**cm.describe(cdims, hw), "predicted": pred, "predicted_ratios": pred_ratios},
    }
    _print_report(report)
    return report


def _dims_of(model, dims_name: str, label: str) -> cm.BenchDims:
    c = model.config
    v = c.vision
    dtype = str(model.dtype).replace("torch.", "")
    return cm.BenchDims(label, c.d_model, c.n_heads, c.n_layers, c.mlp_hidden_size, c.vocab_size, v.hidden_size,
                        v.intermediate_size, v.num_attention_heads, v.num_hidden_layers,
                        dtype if dtype in ("float32", "bfloat16", "float16") else "float32", c.mm_hidden_size,
                        v.patch_size)


def _geometry(name: str, visual_tokens: int, model) -> cm.Geometry:
    default = cm.DEFAULT_GEOMETRY.get(name, cm.Geometry(1, 672, visual_tokens, "shirg"))
    views = default.views
    if name == "lavida" and model.config.image_aspect_ratio != "anyres":
        views = 1
    return cm.Geometry(views, default.resolution, visual_tokens, default.selection)


def _targets(results: dict[str, dict[str, Any]], kv_bytes: dict[str, int], dims: str,
             pred: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    measured: list[float | None] = [None] * 4
    predicted: list[float | None] = [None] * 4
    if "shirg_fixed" in results:
        s = results["shirg_fixed"]
        if "lavida_384" in results:
            measured[0] = s["latency_ms"] / results["lavida_384"]["latency_ms"]
            predicted[0] = pred["shirg_fixed"]["latency_s"] / pred["lavida_384"]["latency_s"]
        if "lavida_672" in results:
            measured[1] = s["latency_ms"] / results["lavida_672"]["latency_ms"]
            predicted[1] = pred["shirg_fixed"]["latency_s"] / pred["lavida_672"]["latency_s"]
    speedups = {n: r["cache_speedup"] for n, r in results.items() if "cache_speedup" in r}
    if speedups:
        worst = min(speedups, key=speedups.get)
        measured[2] = speedups[worst]
        predicted[2] = pred[worst]["cache_speedup"]
    measured[3] = kv_bytes["int8"] / kv_bytes["bf16"]
    sixteen = next(iter(pred.values()))["kv_bytes"]
    predicted[3] = sixteen["int8"] / sixteen["bf16"]
    out = []
    for (name, op, thr), m, p in zip(TARGETS, measured, predicted, strict=True):
        status = "n/a" if m is None else ("PASS" if (m <= thr if op == "<=" else m >= thr) else "MISS")
        if name.startswith("prefix cache") and speedups:
            name = f"{name} [{worst}, worst of {sorted(speedups)}]"
        out.append({"target": name, "threshold": f"{op} {thr}", "measured": m, "predicted": p, "status": status,
                    "dims": dims})
    return out


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _print_report(r: dict[str, Any]) -> None:
    base = r["baseline"]
    print(f"\nshirg-bench [{r['dims']} dims: {r['model']}; {r['device']} {r['dtype']}; timer {r['config']['timer']}; "
          f"median of {r['config']['runs']} runs after {r['config']['warmup']} warm-up; {r['config']['steps']} steps]")
    rows = []
    for name, v in r["variants"].items():
        mem = v.get("peak_memory") or {}
        rows.append([name, v["visual_tokens"], _fmt(v["preprocess_ms"], ".1f"), _fmt(v["vision_ms"], ".1f"),
                     _fmt(v["projector_ms"], ".1f"), _fmt(v["selection_ms"], ".2f"), _fmt(v["prefill_ms"], ".1f"),
                     _fmt(v["step_ms"], ".2f"), _fmt(v["denoise_ms"], ".1f"), _fmt(v["latency_ms"], ".1f"),
                     _fmt(v.get("nocache_denoise_ms"), ".1f"), _fmt(v.get("cache_speedup")),
                     f"{v['selection_share_of_vision'] * 100:.2f}%", _fmt(mem.get("delta_gb"), ".3f"),
                     _fmt(v["prefix_kv_mb"], ".2f"), _fmt(v["latency_ratio"], ".3f"),
                     _fmt(v["predicted_latency_ratio"], ".3f")])
    mem_kind = next((v["peak_memory"]["kind"] for v in r["variants"].values() if "peak_memory" in v), "-")
    print(tabulate(rows, headers=["variant", "vis tok", "preproc ms (CPU)", "vision ms", "proj ms", "select ms",
                                  "prefill ms", "step ms", "denoise ms", "latency ms", "no-cache denoise ms",
                                  "cache x", "select/vision", f"peak mem GB ({mem_kind} delta)", "prefix KV MB",
                                  f"lat / {base}", f"pred lat / {base}"]))
    kv = r["prefix_kv_bytes_by_dtype"]
    print(f"\nprefix KV on {base}'s prompt: auto {kv['auto'] / 2**20:.3f} MB, bf16 {kv['bf16'] / 2**20:.3f} MB, "
          f"int8 {kv['int8'] / 2**20:.3f} MB")
    print(f"\ntargets [{r['dims']} dims; predicted = cost model at these dims, profile {r['cost_model']['hardware']['name']}]")
    print(tabulate([[t["target"], t["threshold"], _fmt(t["measured"], ".3f"), _fmt(t["predicted"], ".3f"), t["status"],
                     t["dims"]] for t in r["targets"]], headers=["target", "need", "measured", "predicted", "status",
                                                                 "dims"]))


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
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
