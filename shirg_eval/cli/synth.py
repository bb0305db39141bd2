"""``shirg-synth``: write offline synthetic stand-ins for the tasks' data sets and print their ``SHIRG_*_PATH``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data.synthetic import SYNTH_SETS, write_synthetic_sets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-synth", description=__doc__)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--n", type=int, default=200, help="records per set (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--what", default="chartqa,docvqa,infovqa,textvqa,ocrbench,lcs",
                        help="comma list of chartqa, docvqa, infovqa, textvqa, ocrbench, lcs, reading (the hard "
                             "reading sets' test split, --n documents each) and reading_train (their training split "
                             "as LLaVA conversations, --n images per set)")
    parser.add_argument("--format", dest="fmt", choices=["parquet", "disk"], default="parquet")
    args = parser.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = set(what) - set(SYNTH_SETS)
    if unknown:
        parser.error(f"unknown --what entries: {sorted(unknown)}")
    env = write_synthetic_sets(Path(args.out), what, args.n, args.seed, args.fmt)
    if env:
        print("\nPoint the lmms-eval tasks (chartqa_200 / docvqa_200 / infovqa_200 / textvqa_200 / ocrbench_200; "
              "chartqa_reading / docvqa_reading) at the local data with:")
        for key, value in env.items():
            print(f"  export {key}={value.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
