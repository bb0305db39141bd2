"""Answer tokens and their padding, as LaViDa builds them (jacklishufan/LaViDa @ 284ef5c; README, "The objective").

An answer is its text, then ``<|eot_id|>`` (the chat template ends the assistant turn with it, ``preprocess_llada``
in ``llava/train/train.py``), then padding. LaViDa right-pads every ``input_ids`` row of a batch with the
tokenizer's pad token, which for LLaDA is EOS ``<|endoftext|>``, to the batch's longest row, and adds
``max(0, k)`` more to the batch with ``k`` uniform in ``[-128, 128)`` (``DataCollatorForSupervisedDataset``,
train.py:1565-1591); the model then scores every EOS (``labels[input_ids == eos] = eos``, llava_llada.py:125-132),
so the LM learns to fill the slots after an answer with EOS, which is how a fixed canvas decodes to a short answer.
Rows are compared in text tokens (the image is one placeholder then), as there: ``prompt_tokens`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.prompting import STOP_TOKEN

PAD_TOKENS = ("eos", "eot")  # data.pad_token: the tokenizer's EOS (LaViDa's) | <|eot_id|> (this trainer's old pad)


def answer_stop_id(tokenizer) -> int:
    """``<|eot_id|>``, the token that ends an answer (the tokenizer's EOS if it has no such token)."""
    tid = tokenizer.convert_tokens_to_ids(STOP_TOKEN)
    if tid is None or tid == tokenizer.unk_token_id:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise ValueError(f"tokenizer has neither {STOP_TOKEN} nor an eos token to end answers with")
    return int(tid)


def pad_token_id(tokenizer, pad_token: str) -> int:
    """The id ``data.pad_token`` names, looked up in the tokenizer (never a fixed id: the 8B tokenizer's EOS is
    126081, the reference model's 1)."""
    if pad_token == "eot":
        return answer_stop_id(tokenizer)
    if pad_token != "eos":
        raise ValueError(f"pad_token must be one of {PAD_TOKENS}, got {pad_token!r}")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token to pad answers with (data.pad_token: eos)")
    return int(tokenizer.eos_token_id)


def answer_token_ids(tokenizer, answer: str, stop_id: int, max_tokens: int | None = None) -> list[int]:
    """``answer <|eot_id|>``, the answer's text cut to ``max_tokens - 1`` tokens if given."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return (ids if max_tokens is None else ids[: max_tokens - 1]) + [stop_id]


def pad_to_length(ids: list[int], length: int, pad_id: int) -> list[int]:
    """``ids`` filled with ``pad_id`` up to ``length`` (never cut)."""
    return ids + [pad_id] * (length - len(ids))


@dataclass(frozen=True)
class AnswerPadding:
    """How a micro-batch's answers are padded (``data.*`` keys; the defaults are LaViDa's)."""

    pad_id: int
    to_batch: bool = True  # every row to the batch's longest (prompt text + answer), as LaViDa's collator
    extra_pad: int = 128  # the batch gets max(0, k) more, k ~ U{-extra_pad, ..., extra_pad - 1}; 0: none
    length: int = 0  # > 0: each answer padded to at least this many tokens (a task's generation length)

    def draw_extra(self, generator: torch.Generator | None) -> int:
        if self.extra_pad <= 0:
            return 0
        return max(0, int(torch.randint(-self.extra_pad, self.extra_pad, (1,), generator=generator)))


def padded_lengths(prompt_tokens: list[int], answer_lengths: list[int], padding: AnswerPadding,
                   fixed: list[int | None] | None = None, extra: int = 0) -> list[int]:
    """Each answer's length after padding.

    ``fixed[i]``: sample ``i``'s own canvas (a reading task's generation length), else ``padding.length``. With
    ``to_batch`` every row then grows to the batch's longest ``prompt_tokens + answer``, plus ``extra`` for all.
    """
    fixed = fixed or [None] * len(answer_lengths)
    lengths = [max(n, f if f is not None else padding.length) for n, f in zip(answer_lengths, fixed, strict=True)]
    if padding.to_batch:
        longest = max(p + n for p, n in zip(prompt_tokens, lengths, strict=True))
        lengths = [longest - p for p in prompt_tokens]
    return [n + extra for n in lengths]


def pad_answer_batch(answers: list[torch.Tensor], prompt_tokens: list[int], padding: AnswerPadding,
                     fixed: list[int | None], room: list[int], generator: torch.Generator | None = None
                     ) -> list[torch.Tensor]:
    """A micro-batch's ``answer <|eot_id|>`` ids padded (:func:`padded_lengths`, with one extra-pad draw for the
    batch), each cut to the ``room`` its prompt leaves in the context."""
    lengths = padded_lengths(prompt_tokens, [a.shape[0] for a in answers], padding, fixed,
                             padding.draw_extra(generator))
    out = []
    for ids, n, free in zip(answers, lengths, room, strict=True):
        n = max(ids.shape[0], min(n, free))
        out.append(torch.cat([ids, ids.new_full((n - ids.shape[0],), padding.pad_id)]))
    return out
