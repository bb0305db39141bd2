"""Quick accuracy of a checkpoint on the reading sets, per variant, without lmms-eval.

For development and the sensitivity tests: the published table comes from the real ``lmms_eval`` command (see
the model card). Scoring is exact match of the single-digit answer, which is what relaxed accuracy and ANLS
reduce to on these sets (a one-character answer is either right or wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

import torch

from ..data.reading import KINDS, make_item
from ..model.lavida import LavidaModel
from ..model.sampler import GenerationConfig
from ..model.tiny import load_tokenizer
from ..pipeline import ShirgPipeline
from .factory import POST_PROMPTS

TASK_PROMPT = {"chart": POST_PROMPTS[1], "doc": POST_PROMPTS[2]}  # chartqa_* / docvqa_* post-prompts
TASK_GEN_LENGTH = {"chart": 16, "doc": 32}


@dataclass
class SetResult:
    variant: str
    kind: str
    correct: list[bool]
    answers: list[str]
    visual_tokens: float

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(1, len(self.correct))


def evaluate(model: LavidaModel, tokenizer, variants: list[str], n: int, split: str = "validation", seed: int = 0,
             kinds: tuple[str, ...] = KINDS, lora: str | None = None, **variant_params: Any) -> list[SetResult]:
    """Answer the first ``n`` items of ``split`` of each set with each variant (greedy, the tasks' settings)."""
    results = []
    for variant in variants:
        pipe = ShirgPipeline(str(getattr(model, "checkpoint_path", "")), variant, model=model, tokenizer=tokenizer,
                             lora=lora, **variant_params)
        for kind in kinds:
            correct, answers, tokens = [], [], []
            for i in range(n):
                item = make_item(kind, i, seed=seed, split=split)
                answer = pipe.answer(item.image, item.question + TASK_PROMPT[kind],
                                     GenerationConfig(gen_length=TASK_GEN_LENGTH[kind]), sample_key=f"{kind}/{i}",
                                     query=item.question)
                answers.append(answer.text)
                correct.append(answer.text.strip() == item.answer)
                tokens.append(answer.visual.n_tokens)
            results.append(SetResult(variant, kind, correct, answers, sum(tokens) / max(1, len(tokens))))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shirg_eval.reference.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--variants", default="lavida,lavida_384,lavida_672,shirg_fixed,random_k")
    parser.add_argument("--n", type=int, default=50, help="items per set")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = LavidaModel.from_pretrained(args.checkpoint, device=args.device, dtype=torch.float32)
    tokenizer = load_tokenizer(args.checkpoint)
    results = evaluate(model, tokenizer, args.variants.split(","), args.n, args.split)
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
