"""LLaDA's SFT form of the masked-diffusion answer loss (``objective: llada_sft``; the default, LaViDa's own form, is
in :mod:`.objective`), over a right-padded micro-batch, and the encoding of a training sample.

Per sequence ``i`` with ``L_i`` answer tokens (the caption followed by ``<|eot_id|>``):

* ``t_i ~ U(eps, 1)``; each answer token is replaced by the mask token with probability ``t_i``;
* prompt tokens (system/user text and the whole image block) are never masked and never scored;
* ``loss_i = (1 / L_i) * sum_{masked j} CE(logits_ij, x_ij) / t_i``  -- normalised by the answer length,
  as LLaDA's SFT loss (``token_loss / answer_lengths``), so long and short captions weigh the same;
* the micro-batch loss is the mean of ``loss_i`` over sequences (a sequence whose draw masks nothing
  contributes 0: the estimator stays unbiased, ``E[#masked / t] = L_i``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.prompting import build_prompt_ids, question_embeds
from .data import Sample


@dataclass
class Sequence:
    prompt_embeds: torch.Tensor  # [Lp, D] text + visual block, never masked
    answer_ids: torch.Tensor  # [La] caption + <|eot_id|>
    prompt_tokens: int = 0  # the prompt's text tokens, the image one placeholder (what LaViDa pads rows by)


def encode_sample(model, visual_path, tokenizer, sample: Sample, image, generator: torch.Generator | None,
                  max_answer_tokens: int, stop_id: int, pad_answers_to: int = 0) -> Sequence:
    """Image + question -> prompt embeddings (gradients flow through SigLIP/projector/selection), answer ids."""
    views = visual_path.prepare(image)
    query = sample.question if sample.query is None else sample.query  # as the harness conditions selection
    visual = visual_path.encode(views, question_embeds(model, tokenizer, query), generator)
    prompt_ids = build_prompt_ids(tokenizer, sample.question)
    prompt = model.embed_prompt(prompt_ids, visual.embeds)[0]
    ids = tokenizer(sample.answer, add_special_tokens=False)["input_ids"][: max_answer_tokens - 1] + [stop_id]
    ids += [stop_id] * (pad_answers_to - len(ids))  # (nothing when pad_answers_to <= len(ids))
    room = model.config.tokenizer_model_max_length - prompt.shape[0]
    if room < 2:
        raise ValueError(f"sample {sample.uid}: prompt fills the context ({prompt.shape[0]} positions)")
    ids = ids[: room - 1] + [stop_id] if len(ids) > room else ids
    return Sequence(prompt, torch.tensor(ids, dtype=torch.long, device=prompt.device), prompt_ids.numel())


@dataclass
class NoisedBatch:
    """A micro-batch with its answers partly masked, right-padded into one LM input."""

    embeds: torch.Tensor  # [B, L, D]
    key_padding: torch.Tensor  # [B, L] True on padding
    masks: list[torch.Tensor]  # per sequence, [La] True where the answer token was masked
    t: torch.Tensor  # [B] mask ratio drawn per sequence
    prompt_lengths: list[int]


def noise_answers(model, sequences: list[Sequence], mask_id: int, eps: float = 1e-3,
                  generator: torch.Generator | None = None, full_mask: bool = False) -> NoisedBatch:
    """Draw ``t`` and the masks (module docstring), embed, and right-pad (padded keys leave attention)."""
    device = sequences[0].prompt_embeds.device
    batch = len(sequences)
    t = torch.ones(batch) if full_mask else eps + (1 - eps) * torch.rand(batch, generator=generator, device="cpu")
    masks = [(torch.rand(seq.answer_ids.shape[0], generator=generator, device="cpu") < t[i]).to(device)
             for i, seq in enumerate(sequences)]
    return embed_noised(model, sequences, masks, t, mask_id)


def embed_noised(model, sequences: list[Sequence], masks: list[torch.Tensor], t: torch.Tensor,
                 mask_id: int) -> NoisedBatch:
    """Replace the masked answer tokens by the mask token, embed, and right-pad (padded keys leave attention)."""
    device = sequences[0].prompt_embeds.device
    batch = len(sequences)
    rows = []
    for seq, mask in zip(sequences, masks, strict=True):
        noisy = torch.where(mask, torch.full_like(seq.answer_ids, mask_id), seq.answer_ids)
        answer_embeds = model.embed_tokens(noisy).to(seq.prompt_embeds.dtype)
        rows.append(torch.cat([seq.prompt_embeds, answer_embeds], dim=0))
    longest = max(r.shape[0] for r in rows)
    embeds = rows[0].new_zeros(batch, longest, rows[0].shape[1])
    key_padding = torch.ones(batch, longest, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        embeds[i, : row.shape[0]] = row
        key_padding[i, : row.shape[0]] = False
    return NoisedBatch(embeds, key_padding, masks, t.to(device), [s.prompt_embeds.shape[0] for s in sequences])


def answer_loss(logits: torch.Tensor, sequences: list[Sequence], noised: NoisedBatch, offset: int = 0) -> torch.Tensor:
    """Mean over sequences of ``sum_masked CE / t / L_a``; ``logits`` start at position ``offset``."""
    per_seq = []
    for i, seq in enumerate(sequences):
        start, la = noised.prompt_lengths[i] - offset, seq.answer_ids.shape[0]
        ce = F.cross_entropy(logits[i, start: start + la].float(), seq.answer_ids, reduction="none")
        per_seq.append((ce * noised.masks[i]).sum() / noised.t[i] / la)
    return torch.stack(per_seq).mean()


def masked_diffusion_loss(model, sequences: list[Sequence], mask_id: int, eps: float = 1e-3,
                          generator: torch.Generator | None = None,
                          full_mask: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked-diffusion loss of one micro-batch (see the module docstring for the normalisation).

    ``full_mask``: ``t = 1`` for every sequence, i.e. the cross-entropy of the answer with every slot masked.
    """
    noised = noise_answers(model, sequences, mask_id, eps, generator, full_mask)
    lengths = [(lp, s.answer_ids.shape[0]) for lp, s in zip(noised.prompt_lengths, sequences, strict=True)]
    # Logits only where answers can be (from the shortest prompt on): the LM head over every image token
    # would cost B x L x vocab memory for nothing.
    first = min(noised.prompt_lengths)
    keep = torch.arange(first, noised.embeds.shape[1], device=noised.embeds.device)
    logits = model.logits(noised.embeds, key_padding=noised.key_padding, logits_to_keep=keep)
    loss = answer_loss(logits, sequences, noised, offset=first)
    masks = noised.masks
    info = {"tokens": float(sum(lp + la for lp, la in lengths)), "answer_tokens": float(sum(la for _, la in lengths)),
            "masked_tokens": float(sum(m.sum().item() for m in masks))}
    return loss, info
