"""Quick accuracy of a checkpoint on the reading sets, per variant, without lmms-eval.

For development and the sensitivity tests: the published table comes from the real ``lmms_eval`` command (see
the model card). Scoring is exact match of the single-digit answer: what relaxed accuracy is on these sets (ANLS
also gives half credit to a two-character answer such as "77").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..data.reading import KINDS, make_item, reading_task
from ..model.lavida import LavidaModel
from ..model.prompting import build_prompt_ids, stop_ids
from ..model.sampler import GenerationConfig
from ..pipeline import ShirgPipeline
from ..training.probe import first_slot_logits


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


def digit_ids(tokenizer) -> list[int]:
    """The token ids of the digits 0-9 (one token each, as the reference tokenizer has them)."""
    ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    if None in ids or len(set(ids)) != 10 or tokenizer.unk_token_id in ids:
        raise ValueError("answer_probability needs a tokenizer with one token per digit 0-9")
    return ids


@torch.no_grad()
def answer_probability(pipe: ShirgPipeline, image, prompt: str, answer: str, gen_length: int,
                       query: str | None = None, digits: list[int] | None = None,
                       full_softmax: bool = False) -> float | tuple[float, float]:
    """Probability of a one-digit ``answer`` at the first answer slot, the whole answer masked, among the ten digits.

    ``full_softmax``: instead (p(answer), p(stop)) over the whole vocabulary, p(stop) being the probability of
    ``<|eot_id|>`` or EOS there (what :mod:`shirg_eval.training.probe` logs during training).

    The sampler's first step sees exactly this (through the Prefix-DLM cache, the tasks' default). One forward per
    document, and a graded score: on a model that reads weakly it separates two visual paths with far fewer
    documents than exact match does (tests only; the published figures are the tasks' metrics). Being renormalised
    over the digits, it cannot see a path that answers the stop token or a word instead (``full_softmax`` can).
    """
    model = pipe.model
    if pipe.path.in_lm:
        raise ValueError(f"{pipe.variant}: an in-LM reducer changes the prefill; answer_probability covers the "
                         "visual paths whose selection happens before the LM")
    if not (len(answer) == 1 and answer.isdigit()):
        raise ValueError(f"answer_probability scores one-digit answers, got {answer!r}")
    digits = digit_ids(pipe.tokenizer) if digits is None else digits
    visual = pipe.path.encode(pipe.path.prepare(image), pipe.question_embeds(prompt if query is None else query),
                              pipe.generator)
    prompt_embeds = model.embed_prompt(build_prompt_ids(pipe.tokenizer, prompt), visual.embeds)
    logits = first_slot_logits(model, prompt_embeds, gen_length)  # the sampler's first step (Prefix-DLM cache)
    if full_softmax:
        probs = logits.softmax(-1)
        return float(probs[digits[int(answer)]]), float(probs[stop_ids(pipe.tokenizer)].sum())
    return float(logits[digits].softmax(-1)[int(answer)])


def answer_probabilities(model: LavidaModel, tokenizer, variant: str, n: int, split: str = "test",
                         kinds: tuple[str, ...] = KINDS, lora: str | None = None,
                         **variant_params: Any) -> dict[str, float]:
    """``answer_probability`` of the first ``n`` items of each set: {"<set>/<index>": p}.

    A ``lora`` is merged into ``model`` (as ``ShirgPipeline`` loads it): pass a model of its own.
    """
    pipe = ShirgPipeline(str(getattr(model, "checkpoint_path", "")), variant, model=model, tokenizer=tokenizer,
                         lora=lora, **variant_params)
    digits, out = digit_ids(tokenizer), {}
    for kind in kinds:
        for i in range(n):
            item = make_item(kind, i, split=split)
            pipe.reseed(f"{kind}/{i}")
            task = reading_task(kind)
            out[f"{kind}/{i}"] = answer_probability(pipe, item.image, task.prompt(item.question),
                                                    item.answer, task.max_new_tokens, query=item.question,
                                                    digits=digits)
    return out


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
                answer = pipe.answer(item.image, reading_task(kind).prompt(item.question),
                                     GenerationConfig(gen_length=reading_task(kind).max_new_tokens),
                                     sample_key=f"{kind}/{i}",
                                     query=item.question)
                answers.append(answer.text)
                correct.append(answer.text.strip() == item.answer)
                tokens.append(answer.visual.n_tokens)
            results.append(SetResult(variant, kind, correct, answers, sum(tokens) / max(1, len(tokens))))
    return results


# (token grid, view px per image px): LaViDa's 384 px view of a ~1000 px image, the anyres tiles (768 px for the
# whole image), and the 672 px view (48 x 48 patches, interpolated position embeddings)
TOWER_PROBES = ((27, 0.38), (27, 0.5), (27, 0.6), (27, 0.77), (48, 0.67))


def tower_reading(checkpoint: str, n_images: int = 12, split: str = "validation") -> list[dict[str, float]]:
    """Digit accuracy of the tower's dense heads per view scale (a ``checkpoint-dense-*`` folder: it keeps them)."""
    import random

    from .batches import DenseBatch
    from .dense import ReadingHeads, dense_loss_from_batch, sample_view

    model = LavidaModel.from_pretrained(checkpoint, device="cpu", dtype=torch.float32).eval()
    heads = ReadingHeads.load(checkpoint, model.config.mm_hidden_size)
    rows = []
    for grid, scale in TOWER_PROBES:
        hits = total = 0.0
        with torch.no_grad():
            for j in range(n_images):
                item = make_item(KINDS[j % len(KINDS)], j, split=split)
                view = sample_view(item, random.Random(j), grid, scale)
                batch = DenseBatch(0, view.pixels[None], view.digits[None], view.colours[None])
                _, stats = dense_loss_from_batch(model.vision_tower, heads, batch, torch.device("cpu"))
                hits += stats["digit_acc"] * stats["digit_patches"]
                total += stats["digit_patches"]
        rows.append({"grid": grid, "scale": scale, "digit_accuracy": round(100 * hits / max(total, 1), 1),
                     "digit_patches": int(total)})
    return rows
