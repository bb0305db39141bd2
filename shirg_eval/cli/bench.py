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
import sys
from pathlib import Path

from ..bench import cost_model as cm
from ..bench.interleave import ORDERS
from ..bench.run import DEFAULT_VARIANTS, measure_bench, model_only, write_json


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    explicit_dims = "--dims" in (argv if argv is not None else sys.argv[1:])
    if args.harness_overhead:
        from ..bench.harness_overhead import measure
        from ..bench.harness_overhead import report as overhead_report

        variant = args.variants.split(",")[0] if "--variants" in (argv or sys.argv[1:]) else "shirg_fixed"
        report = measure(variant, args.harness_docs, args.pretrained)
        print(overhead_report(report))
    else:
        report = model_only(args, explicit_dims) if args.model_only else measure_bench(args)
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
