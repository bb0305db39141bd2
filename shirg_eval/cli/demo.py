"""``shirg-demo`` (``make demo``): the offline benchmark on the embedded default.

1. pick the checkpoint: ``--pretrained``, else the trained reference mini-LaViDa when one is committed
(``models/reference``, made by ``shirg-train-reference``; see its MODEL_CARD.md), else a tiny LaViDa with random
weights built into the demo folder, 2. answer one held-out chart with every variant (answer, visual tokens,
timings), 3. run the demo sweep through the real ``lmms_eval`` command on the hard reading sets
(``chartqa_reading`` / ``docvqa_reading``, rendered on first use), 4. print the leaderboard with paired bootstrap
intervals and write plots. Token counts and latency ratios are always real (CPU figures at small widths);
accuracies are real only for a trained checkpoint: random weights score about 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..report.demo import answer_table, pick_checkpoint, reference_lora, run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="where rendered data, runs and plots go")
    parser.add_argument("--pretrained", default=None,
                        help="checkpoint (default: models/reference if committed, else a tiny random LaViDa)")
    parser.add_argument("--limit", type=int, default=None, help="documents per task in the sweep (default: demo.yaml)")
    parser.add_argument("--skip-sweep", action="store_true", help="only the single-image answers")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    checkpoint = pick_checkpoint(args.pretrained, out)
    if checkpoint is None:
        return 2
    lora = reference_lora(checkpoint)
    print(f"[demo] checkpoint: {checkpoint}" + (f" (+ LoRA {lora})" if lora else ""), flush=True)
    print("\n[demo] one held-out chart, every variant")
    print(answer_table(checkpoint, lora), flush=True)
    if args.skip_sweep:
        return 0
    code = run_sweep(out, checkpoint, lora, args.limit)
    print(f"\n[demo] finished in {time.time() - started:.0f} s; leaderboard: {out / 'sweep' / 'leaderboard.md'}, "
          f"plots: {out / 'sweep' / 'plots'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
