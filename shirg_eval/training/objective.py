"""The masked-diffusion objective on answer tokens: LaViDa's (the default) or LLaDA's SFT form, random or full masks.

``objective: lavida`` is what the released LaViDa weights were trained with (jacklishufan/LaViDa @ 284ef5c):

* ``t ~ U(0, 1)``, ``p = (1 - eps) t + eps``; each answer token is masked with probability ``p``, and at least one
  always is (``forward_process``, llava_llada.py:56-71: the cut-off is ``max(p, min_j u_j)``);
* every sample is trained a second time with the complementary mask, in the same batch (llava_llada.py:165-189);
  the complement of a full mask is empty and is dropped;
* the loss is the plain mean cross-entropy over all masked tokens of the batch, both halves together: no ``1/t``,
  no per-answer normalisation (``F.cross_entropy`` with its mean over labelled tokens, modeling_llada.py:1517-1521).

``objective: llada_sft`` is LLaDA's SFT form (this trainer's form before): one mask per sample,
``loss_i = sum_{masked j} CE_ij / t_i / L_i``, averaged over samples (:func:`.loss.answer_loss`).

``mask: full`` masks every answer token (``t = 1``): the state the sampler's first step sees, and how the reference
model's LM was trained. A base checkpoint may record how it was trained (``training_record.json``); the trainer warns
when a configuration differs from it (:func:`base_record_differences`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .loss import NoisedBatch, Sequence, answer_loss, embed_noised, noise_answers

OBJECTIVES = ("lavida", "llada_sft")
MASKS = ("random", "full")
BASE_RECORD = "training_record.json"


@dataclass(frozen=True)
class Objective:
    form: str = "lavida"  # lavida | llada_sft
    mask: str = "random"  # random | full
    eps: float = 1e-3  # the smallest mask ratio of a random draw

    def __post_init__(self) -> None:
        if self.form not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.form!r}")
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")


def draw_masks(lengths: list[int], objective: Objective,
               generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One mask per answer (True = masked) and its ratio ``t``, drawn on the CPU generator in a fixed order (all
    ``t`` first, then each answer's uniforms), so that ``llada_sft`` draws exactly what :func:`.loss.noise_answers`
    draws."""
    if objective.mask == "full":
        return [torch.ones(n, dtype=torch.bool) for n in lengths], torch.ones(len(lengths))
    p = objective.eps + (1 - objective.eps) * torch.rand(len(lengths), generator=generator, device="cpu")
    masks = []
    for i, n in enumerate(lengths):
        u = torch.rand(n, generator=generator, device="cpu")
        # LaViDa masks u <= max(p, min u): at least one token; LLaDA's SFT form keeps u < p (possibly none)
        masks.append(u <= torch.maximum(p[i], u.min()) if objective.form == "lavida" else u < p[i])
    return masks, p


def with_complements(sequences: list[Sequence], masks: list[torch.Tensor],
                     t: torch.Tensor) -> tuple[list[Sequence], list[torch.Tensor], torch.Tensor]:
    """The batch followed by each sample under its complementary mask (empty complements dropped)."""
    keep = [i for i, m in enumerate(masks) if not bool(m.all())]
    return (sequences + [sequences[i] for i in keep], masks + [~masks[i] for i in keep],
            torch.cat([t, 1 - t[keep]]))


def masked_loss(answer_logits: list[torch.Tensor], targets: list[torch.Tensor], masks: list[torch.Tensor],
                t: torch.Tensor, form: str) -> torch.Tensor:
    """The loss of rows whose answer logits ``[L_i, V]``, targets and masks are given (module docstring)."""
    ce = [F.cross_entropy(lg.float(), y, reduction="none") for lg, y in zip(answer_logits, targets, strict=True)]
    if form == "lavida":
        masked = torch.stack([m.sum() for m in masks]).sum()
        return torch.stack([(c * m).sum() for c, m in zip(ce, masks, strict=True)]).sum() / masked.clamp(min=1)
    return torch.stack([(c * m).sum() / t[i] / m.shape[0] for i, (c, m) in enumerate(zip(ce, masks, strict=True))]
                       ).mean()


def diffusion_loss(model, sequences: list[Sequence], mask_id: int, objective: Objective,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective's loss of one micro-batch and its counts (tokens of the rows forwarded, masked tokens)."""
    if objective.form == "llada_sft" and objective.mask == "random":
        noised = noise_answers(model, sequences, mask_id, objective.eps, generator)  # the former trainer, bit for bit
        rows = sequences
    else:
        masks, t = draw_masks([s.answer_ids.shape[0] for s in sequences], objective, generator)
        device = sequences[0].prompt_embeds.device
        masks = [m.to(device) for m in masks]
        rows = sequences
        if objective.form == "lavida":
            rows, masks, t = with_complements(sequences, masks, t)
        noised = embed_noised(model, rows, masks, t, mask_id)
    # Logits only where answers can be (from the shortest prompt on): the LM head over every image token
    # would cost B x L x vocab memory for nothing.
    first = min(noised.prompt_lengths)
    keep = torch.arange(first, noised.embeds.shape[1], device=noised.embeds.device)
    logits = model.logits(noised.embeds, key_padding=noised.key_padding, logits_to_keep=keep)
    if objective.form == "llada_sft":
        loss = answer_loss(logits, rows, noised, offset=first)
    else:
        loss = masked_loss(_answer_logits(logits, rows, noised, first), [s.answer_ids for s in rows],
                           noised.masks, noised.t, objective.form)
    info = {"tokens": float(sum(lp + s.answer_ids.shape[0] for lp, s in zip(noised.prompt_lengths, rows, strict=True))),
            "answer_tokens": float(sum(s.answer_ids.shape[0] for s in sequences)),
            "masked_tokens": float(sum(m.sum().item() for m in noised.masks)), "rows": float(len(rows))}
    return loss, info


def _answer_logits(logits: torch.Tensor, rows: list[Sequence], noised: NoisedBatch, offset: int) -> list[torch.Tensor]:
    return [logits[i, lp - offset: lp - offset + s.answer_ids.shape[0]]
            for i, (lp, s) in enumerate(zip(noised.prompt_lengths, rows, strict=True))]


# ------------------------------------------------------------------------------------------ the base's record
@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint's answers were trained (``<checkpoint>/training_record.json``); None = not recorded."""

    objective: str | None = None
    mask: str | None = None
    pad_token: str | None = None  # eos | eot (data.pad_token's names)
    pad_to_batch: bool | None = None
    answers: str = ""  # the answer layout in words, for the reader

    @classmethod
    def load(cls, checkpoint: str | Path) -> TrainingRecord | None:
        path = Path(checkpoint) / BASE_RECORD
        if not path.is_file():
            return None
        raw: dict[str, Any] = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def base_record_differences(record: TrainingRecord | None, objective: str, mask: str, pad_token: str,
                            pad_to_batch: bool) -> list[str]:
    """``key: config X, base trained with Y`` for every recorded setting the configuration does not match."""
    if record is None:
        return []
    ours = {"objective": objective, "mask": mask, "data.pad_token": pad_token, "data.pad_to_batch": pad_to_batch}
    recorded = {key: getattr(record, key.split(".")[-1]) for key in ours}
    return [f"{key}: config {value!r}, base trained with {recorded[key]!r}" for key, value in ours.items()
            if recorded[key] is not None and recorded[key] != value]
