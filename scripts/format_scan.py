"""Where the reference model's answer format breaks, by visual-token budget (issue #23, "no blind spots").

Runs ``pool_k`` (uniform pooling of the 672 px view to ``k`` tokens, so only the prefix length changes) on the
first ``--docs`` items of each hard reading set at each budget and reports, per budget and set, the share of
malformed answers (anything but exactly one digit: the sets' answers are single digits) and the exact-match
accuracy. The sweep found the doubled-digit failure ("77") at 576 tokens on charts and 768 on documents; this
scan maps it at every budget the harness uses, cheaply. One thread::

    OMP_NUM_THREADS=1 python scripts/format_scan.py --checkpoint models/reference --docs 30 \\
        --budgets 144 256 400 576 672 768 912 1296 2304
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch

from shirg_eval.data.reading import KINDS
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.tokenizer import load_tokenizer
from shirg_eval.reference.evaluate import evaluate

DEFAULT_BUDGETS = (144, 256, 400, 576, 672, 768, 912, 1296, 2304)


def well_formed(answer: str) -> bool:
    """One digit, as the reading sets' answers are."""
    text = answer.strip()
    return len(text) == 1 and text.isdigit()


def scan(checkpoint: str, budgets: list[int], docs: int, split: str, kinds: tuple[str, ...] = KINDS) -> list[dict]:
    model = LavidaModel.from_pretrained(checkpoint, device="cpu", dtype=torch.float32).eval()
    tokenizer = load_tokenizer(checkpoint)
    rows = []
    for k in budgets:
        start = time.perf_counter()
        for result in evaluate(model, tokenizer, ["pool_k"], docs, split=split, kinds=kinds, k=k):
            malformed = [a for a in result.answers if not well_formed(a)]
            rows.append({"k": k, "set": result.kind, "docs": len(result.answers),
                         "lm_tokens": result.visual_tokens,
                         "malformed": len(malformed) / len(result.answers),
                         "accuracy": result.accuracy,
                         "top_malformed": Counter(malformed).most_common(3),
                         "wall_s": round(time.perf_counter() - start, 1)})  # since this budget began
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/reference")
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--sets", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--budgets", type=int, nargs="+", default=list(DEFAULT_BUDGETS))
    args = parser.parse_args()
    rows = scan(args.checkpoint, args.budgets, args.docs, args.split, tuple(args.sets))
    print("\n| k | LM tokens | set | malformed | accuracy | most common malformed |\n|---|---|---|---|---|---|")
    for row in rows:
        top = ", ".join(f"{a!r} x{n}" for a, n in row["top_malformed"]) or "-"
        print(f"| {row['k']} | {row['lm_tokens']:.0f} | {row['set']} | {row['malformed']:.1%} | {row['accuracy']:.1%} | {top} |")


if __name__ == "__main__":
    main()
