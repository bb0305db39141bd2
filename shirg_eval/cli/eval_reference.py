"""``shirg-eval-reference``: quick accuracy of a checkpoint on the reading sets, per variant, without lmms-eval.

For development and the sensitivity tests; the published table comes from the real ``lmms_eval`` command. See
:mod:`shirg_eval.reference.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..model.lavida import LavidaModel
from ..model.tokenizer import load_tokenizer
from ..reference.evaluate import evaluate, tower_reading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-eval-reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--variants", default="lavida,lavida_384,lavida_672,shirg_fixed,random_k")
    parser.add_argument("--n", type=int, default=50, help="items per set")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--tower", action="store_true",
                        help="instead: the tower's digit accuracy per view scale (CHECKPOINT = a checkpoint-dense-*)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.tower:
        rows = tower_reading(args.checkpoint, split=args.split)
        for row in rows:
            print(f"grid {row['grid']:2d}, {row['scale']:.2f} view px per image px: digits read "
                  f"{row['digit_accuracy']:5.1f}% of {row['digit_patches']} digit patches")
    else:
        model = LavidaModel.from_pretrained(args.checkpoint, device=args.device, dtype=torch.float32)
        results = evaluate(model, load_tokenizer(args.checkpoint), args.variants.split(","), args.n, args.split)
        rows = []
        for r in results:
            rows.append({"variant": r.variant, "set": r.kind, "accuracy": round(100 * r.accuracy, 1),
                         "visual_tokens": r.visual_tokens, "answers": r.answers[:10]})
            print(f"{r.variant:>14} {r.kind:>5} acc {100 * r.accuracy:5.1f}%  tokens {r.visual_tokens:7.1f}  "
                  f"answers {r.answers[:8]}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
