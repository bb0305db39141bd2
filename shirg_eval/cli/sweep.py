"""``shirg-sweep``: run a YAML grid of lmms-eval cells, resumably, then build the leaderboard.

The YAML format and its checks: :mod:`shirg_eval.report.sweep_config` (and ``sweep_safety``); the runner, the
cell folders and the resume rules: :mod:`shirg_eval.report.sweep`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..report import sweep_safety as safety
from ..report.sweep import build_leaderboard, default_lmms_eval_cmd, dry_run, run_cells
from ..report.sweep_config import load_sweep, parse_overrides, task_list


def parse_shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    i_, n_ = int(i), int(n)
    if not (n_ >= 1 and 0 <= i_ < n_):
        raise argparse.ArgumentTypeError(f"--shard wants i/n with 0 <= i < n, got {text!r}")
    return i_, n_


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shirg-sweep", description=__doc__.splitlines()[0])
    p.add_argument("config", help="sweep YAML (configs/sweeps/*.yaml)")
    p.add_argument("--output-root", help="override the YAML's output_root")
    p.add_argument(
        "--model_args",
        "--model-args",
        dest="model_args",
        help="k=v,... applied to every cell (e.g. pretrained=/path/to/tiny)",
    )
    p.add_argument("--limit", type=float, help="override the YAML's limit (documents, or a fraction below 1)")
    p.add_argument("--tasks", help="a,b,...: run every cell on these tasks instead of the YAML's")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shard", type=parse_shard, help="i/n: run cells i, i+n, i+2n, ... (0-based)")
    group.add_argument("--gpus", help="0,1,...: one worker per GPU (CUDA_VISIBLE_DEVICES), cells round-robin")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--lmms-eval-cmd", help="command that runs lmms-eval (default: the lmms_eval script)")
    p.add_argument("--no-leaderboard", action="store_true", help="skip the final leaderboard and plots")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="stream lmms-eval output instead of logging it"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sweep = load_sweep(args.config, parse_overrides(args.model_args))
        if args.limit is not None:
            safety.check_limit(args.limit, "--limit")
        tasks = task_list(args.tasks, "--tasks") if args.tasks else None
    except (OSError, ValueError, KeyError, yaml.YAMLError) as err:
        # Refused before any cell runs or any folder is touched: one line naming the problem.
        print(f"shirg-sweep: error: {err}", file=sys.stderr)
        return 2
    if args.output_root:
        sweep.output_root = Path(args.output_root)
    if args.limit is not None:
        limit = int(args.limit) if args.limit.is_integer() else args.limit
        for c in sweep.cells:
            c.limit = limit
    if tasks is not None:
        sweep.tasks = tasks
        for c in sweep.cells:
            c.tasks = list(tasks)
    base_cmd = shlex.split(args.lmms_eval_cmd) if args.lmms_eval_cmd else default_lmms_eval_cmd()
    cells = list(enumerate(sweep.cells))
    if args.shard:
        i, n = args.shard
        cells = [(k, c) for k, c in cells if k % n == i]
    if args.dry_run:
        dry_run(sweep, cells, base_cmd)
        return 0

    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    try:
        runner = run_cells(sweep, cells, base_cmd, gpus, verbose=args.verbose)
    except KeyboardInterrupt:
        print("shirg-sweep: interrupted; completed cells keep their .complete marker, rerun to resume",
              file=sys.stderr)
        return 130
    status = 0
    if runner.failed:
        print(f"shirg-sweep: {len(runner.failed)} cell(s) failed: {', '.join(runner.failed)}", file=sys.stderr)
        status = 1
    if args.no_leaderboard or args.shard:
        return status
    if runner.busy:  # another sweep is writing this root: its leaderboard is its own to build
        print(f"shirg-sweep: leaderboard not built: another sweep is running {', '.join(runner.busy)}",
              file=sys.stderr)
        return status
    return status if build_leaderboard(sweep, args.n_boot) else status or 1


if __name__ == "__main__":
    sys.exit(main())
