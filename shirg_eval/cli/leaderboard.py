"""``shirg-leaderboard``: lmms-eval output folders -> one honest table.

The table is built in :mod:`shirg_eval.report.table` and written with its plots and report by
:mod:`shirg_eval.report.publish`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..report.publish import LeaderboardArgs, run_leaderboard
from ..report.table import LeaderboardError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shirg-leaderboard", description=__doc__.splitlines()[0])
    p.add_argument(
        "dirs", nargs="+", help="lmms-eval output folders (searched at any depth) or results.json files"
    )
    p.add_argument("--baseline", help="VARIANT[@LORA] (or a full row label) the deltas and ratios are relative to")
    p.add_argument("--format", dest="fmt", default="markdown", choices=["markdown", "csv", "latex", "html"])
    p.add_argument("--output", help="write the table here instead of stdout")
    p.add_argument("--plots", help="write PNG+SVG plots into this folder")
    p.add_argument("--report", help="write a self-contained report into this folder")
    p.add_argument("--report-format", default="md", choices=["md", "html"])
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--n-boot-cider",
        type=int,
        default=200,
        help="resamples for corpus CIDEr deltas, which recompute CIDEr each time (default 200)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_leaderboard(LeaderboardArgs(**vars(args)))
    except LeaderboardError as exc:
        print(f"shirg-leaderboard: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
