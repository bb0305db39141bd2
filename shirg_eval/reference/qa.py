"""Stage 2 of the reference recipe: question answering with LaViDa's masked-diffusion objective.

Samples go through a :class:`~shirg_eval.visual.path.VisualPath` (by default LaViDa's release path: anyres
384 px tiles, 2x2 pooling, newlines), the ``llada`` prompt with one of the tasks' instructions, and an answer
padded with end-of-text tokens to the generation length, as LLaDA's SFT does: the model learns to fill every
masked slot after the answer with EOS, so decoding a 16- or 32-slot canvas ends cleanly.
"""

from __future__ import annotations

import torch

from ..data.reading import KINDS, reading_task
from ..model.prompting import build_prompt_ids, question_embeds
from ..training.answers import answer_stop_id, answer_token_ids, pad_to_length, pad_token_id
from ..training.loss import Sequence
from .batches import QASample

GEN_LENGTHS = tuple(reading_task(kind).max_new_tokens for kind in KINDS)  # the tasks' (ChartQA 16, DocVQA 32)


def answer_ids(tokenizer, answer: str, gen_length: int) -> torch.Tensor:
    """``answer <|eot_id|> <eos> ... <eos>``: exactly ``gen_length`` ids."""
    ids = answer_token_ids(tokenizer, answer, answer_stop_id(tokenizer))
    if len(ids) > gen_length:
        raise ValueError(f"answer {answer!r} needs {len(ids)} slots, more than gen_length={gen_length}")
    return torch.tensor(pad_to_length(ids, gen_length, pad_token_id(tokenizer, "eos")), dtype=torch.long)


class PromptIds:
    """``build_prompt_ids`` memoised per prompt text: a few dozen distinct prompts recur in every batch, and the
    chat template costs more than the GPU step of one sequence."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            self.cache[text] = build_prompt_ids(self.tokenizer, text)
        return self.cache[text]


def sample_sequences(model, tokenizer, path, sample: QASample, generator: torch.Generator | None = None,
                     prompt_ids: PromptIds | None = None) -> list[Sequence]:
    """The training sequences of one image: its views are encoded once unless selection reads the question."""
    prompt_ids = prompt_ids or PromptIds(tokenizer)
    shared = path.encode(sample.views) if path.selector is None else None
    sequences = []
    for q in sample.questions:
        # Text-aware selectors see the question alone, as in evaluation.
        visual = shared or path.encode(sample.views, question_embeds(model, tokenizer, q.question), generator)
        prompt = model.embed_prompt(prompt_ids(q.prompt), visual.embeds)[0]
        sequences.append(Sequence(prompt, answer_ids(tokenizer, q.answer, q.gen_length).to(prompt.device)))
    return sequences
