"""Reading guidance for the QA stage: auxiliary losses that make "answer from the image" learnable from scratch.

With the answer loss alone, three recipes here (and three before them) learned the answer format and the digit
prior but never the image: the one label per question reaches the projector and the LM only through attention that
is still uniform over ~1,000 visual positions, so its gradient is all but zero. The renderer knows where every
digit is and which cue colour lies under it (:mod:`.labels` maps both onto the visual block), so dense signals can
be added (they exist only in training; the checkpoint is LaViDa's layout as always):

* **reading**: at every visual position that shows a digit, the LM head (through all LM layers) predicts that
  digit's token (optionally, at the other positions of a cued region, the colour's word; digits and colour words
  are two means). The projector and LM learn to carry what the tower reads into the LM's own token space.
* **pointer**: the last LM layer's attention from the first answer slot (averaged over heads) puts its mass on the
  visual positions of the anyres tiles that hold part of the asked number: ``-log(sum of that mass)``. The LM
  learns where to look; the answer loss then only has to learn to copy what it sees.
* **cue**: at the last LM layer's input, the first answer slot names the asked colour and every position of a cued
  region names its region's colour, both through the LM head restricted to the colour words (a logit lens). The
  pointer's query and keys then meet in one subspace: without it, the attention found digits (67 % of its mass)
  but not the asked one (20 %), and the answer stayed a constant digit.
* **carry**: at the same layer input, every digit position names its digit (logit lens over the digit tokens):
  the last layer's values, which the pointed attention copies to the answer slot, then hold the digit. Without it
  the pointer put 91 % of its mass on the asked number, whose position read the right digit 49 % of the time at
  the LM's output, and the answer slot still guessed (11 %): the reading happened in the last layer itself.

An earlier version took both labels from the stage-1 heads' pooled predictions; on the release path those agreed
with the asked answer on only 23 % of questions, and a model trained on them pointed at the right place and still
answered a constant digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ..data.reading import COLOUR_NAMES
from ..model.lavida import IMAGE_TOKEN_INDEX, LavidaModel
from ..training.loss import answer_loss, noise_answers
from .dense import BACKGROUND
from .labels import POOLED, answer_positions, block_labels
from .qa import answer_ids

IGNORE = -100


@dataclass
class GuidedSequence:
    prompt_embeds: torch.Tensor  # [Lp, D]: text with the visual block spliced in
    answer_ids: torch.Tensor  # [La]
    visual_start: int  # first visual position in the prompt
    digit_labels: torch.Tensor  # [Lv] token id of the digit shown at each visual position, or IGNORE
    pointer: torch.Tensor  # [Lv] bool: positions holding part of the asked number (in the tiles, where legible)
    shows_digit: torch.Tensor  # [Lv] bool: positions whose label is a digit (the rest name a colour, or nothing)
    colours: torch.Tensor  # [Lv] cue colour of each position's region (0 none, i + 1 = COLOUR_NAMES[i])
    cue: int  # the asked colour (i + 1 = COLOUR_NAMES[i])


def guided_sequences(model: LavidaModel, tokenizer, sample, prompt_ids, digit_token_ids: torch.Tensor,
                     colour_token_ids: torch.Tensor | None = None) -> list[GuidedSequence]:
    """One image's training sequences (its views encoded once for all its questions; ``sample.item`` says where
    its glyphs are).

    With ``colour_token_ids`` (the questions' colour words, in ``COLOUR_NAMES`` order), positions inside a cued
    region that show no digit are read as their colour's word: the visual side of the cue the question names.
    """
    if sample.item is None:
        raise ValueError("reading guidance needs the sample's glyph positions (QASample.item)")
    embeds = model.release_embeds(sample.views)
    digits, colours = block_labels(model, sample.item, sample.views)
    shown = (digits >= 0) & (digits < BACKGROUND)
    labels = torch.where(shown, digit_token_ids[digits.clamp(0, 9)], torch.full_like(digits, IGNORE))
    if colour_token_ids is not None:
        coloured = (digits == BACKGROUND) & (colours > 0)
        labels = torch.where(coloured, colour_token_ids[(colours - 1).clamp(min=0)], labels)
    labels = labels.to(embeds.device)
    sequences = []
    for q in sample.questions:
        ids = prompt_ids(q.prompt)
        flat = ids.flatten()
        start = int((flat == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
        pointer = answer_positions(model, sample.item, sample.views, q.cue)
        if sample.views.grid_wh is not None:  # anyres: the base view shows the glyph at ~0.38 scale, illegibly
            pointer[: POOLED * POOLED] = False
        sequences.append(GuidedSequence(model.embed_prompt(ids, embeds)[0],
                                        answer_ids(tokenizer, q.answer, q.gen_length).to(embeds.device),
                                        start, labels, pointer.to(embeds.device), shown.to(embeds.device),
                                        colours.to(embeds.device),
                                        COLOUR_NAMES.index(q.cue) + 1))
    return sequences


def _first_slot_attention(model: LavidaModel, hidden: torch.Tensor, key_padding: torch.Tensor,
                          slots: list[int]) -> torch.Tensor:
    """The last layer's attention (mean over heads) from position ``slots[i]`` of row ``i``: ``[B, L]``.

    Recomputed for those queries from the layer's input, so the forward itself keeps its fast attention kernel.
    """
    lm = model.language_model.model
    layer = lm.layers[-1]
    attn = layer.self_attn
    batch, length, _ = hidden.shape
    heads, kv_heads = lm.config.num_attention_heads, lm.config.num_key_value_heads
    head_dim = getattr(attn, "head_dim", lm.config.hidden_size // heads)
    x = layer.input_layernorm(hidden)
    positions = torch.arange(length, device=x.device)[None].expand(batch, -1)
    cos, sin = lm.rotary_emb(x, positions)
    rows = torch.arange(batch, device=x.device)
    query_in = x[rows, torch.tensor(slots, device=x.device)][:, None]  # [B, 1, D]
    q = attn.q_proj(query_in).view(batch, 1, heads, head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(batch, length, kv_heads, head_dim).transpose(1, 2)
    slot_index = torch.tensor(slots, device=x.device)
    q, _ = apply_rotary_pos_emb(q, q, cos[rows, slot_index][:, None], sin[rows, slot_index][:, None])
    _, k = apply_rotary_pos_emb(k, k, cos, sin)
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    scores = (q @ k.transpose(-1, -2)).squeeze(2) / head_dim**0.5  # [B, H, L]
    scores = scores.masked_fill(key_padding[:, None], float("-inf"))
    return scores.softmax(-1).mean(1)


def _lens_logits(model: LavidaModel, rows: torch.Tensor, word_ids: torch.Tensor) -> torch.Tensor:
    """Logits of ``word_ids`` only, read from intermediate hidden states through the final norm and the LM head."""
    lm = model.language_model
    return (lm.model.norm(rows) @ lm.lm_head.weight[word_ids.to(rows.device)].T).float()


def _cue_loss(model: LavidaModel, hidden: torch.Tensor, sequences: list[GuidedSequence], slots: list[int],
              masked: list[bool], colour_token_ids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy over the colour words at the last layer's input: the mean over answer slots (naming the asked
    colour) plus the mean over region positions (naming their own); returns the loss and the slots' accuracy.

    Two means, not one: a batch has ~30 slots and thousands of region positions, and pooled, the slots' term (the
    query side, which is what was missing) would carry no weight."""
    # masked first slots only: an unmasked one holds the answer itself, as for the pointer
    rows = torch.tensor([i for i, m in enumerate(masked) if m], dtype=torch.long, device=hidden.device)
    slot_logits = _lens_logits(model, hidden[rows, torch.tensor(slots, device=hidden.device)[rows]], colour_token_ids)
    slot_target = torch.tensor([seq.cue - 1 for seq in sequences], device=hidden.device)[rows]
    region_rows, region_target = [], []
    for i, seq in enumerate(sequences):
        inside = seq.colours.nonzero()[:, 0]
        region_rows.append(hidden[i, seq.visual_start + inside])
        region_target.append(seq.colours[inside] - 1)
    region_loss = F.cross_entropy(_lens_logits(model, torch.cat(region_rows), colour_token_ids), torch.cat(region_target)) \
        if sum(len(t) for t in region_target) else slot_logits.sum() * 0
    if not len(rows):
        return region_loss, 0.0
    slot_acc = (slot_logits.argmax(-1) == slot_target).float().mean().item()
    return F.cross_entropy(slot_logits, slot_target) + region_loss, slot_acc


def guided_loss(model: LavidaModel, sequences: list[GuidedSequence], mask_id: int, *, reading_weight: float,
                pointer_weight: float, full_mask: bool, generator: torch.Generator | None = None,
                eps: float = 1e-3, cue_weight: float = 0.0, carry_weight: float = 0.0,
                colour_token_ids: torch.Tensor | None = None,
                digit_token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Answer loss (masked diffusion as :func:`~shirg_eval.training.loss.masked_diffusion_loss`, or with
    ``full_mask`` every answer slot masked, i.e. cross-entropy) + the weighted guidance losses (module docstring)."""
    noised = noise_answers(model, sequences, mask_id, eps, generator, full_mask)
    batch, longest = noised.key_padding.shape
    masks, prompt_lengths, key_padding = noised.masks, noised.prompt_lengths, noised.key_padding
    reading_labels = torch.full((batch, longest), IGNORE, dtype=torch.long, device=key_padding.device)
    digit_at = torch.zeros_like(reading_labels, dtype=torch.bool)
    for i, seq in enumerate(sequences):
        block = slice(seq.visual_start, seq.visual_start + seq.digit_labels.shape[0])
        reading_labels[i, block] = seq.digit_labels
        digit_at[i, block] = seq.shows_digit
    if cue_weight > 0 and colour_token_ids is None:
        raise ValueError("the cue loss needs the colour words' token ids (colour_token_ids)")
    if carry_weight > 0 and digit_token_ids is None:
        raise ValueError("the carry loss needs the digits' token ids (digit_token_ids)")
    out = model.forward(noised.embeds, key_padding=key_padding,
                        output_hidden_states=pointer_weight > 0 or cue_weight > 0 or carry_weight > 0)
    logits = out.logits.float()  # every position: the reading loss scores the visual block
    answer = answer_loss(logits, sequences, noised)
    shown = reading_labels != IGNORE
    # digits and colour words as two means: regions hold ~5x more colour positions than there are digits, and
    # pooled, the colour words (easy) drowned the digits (the point): 18 % of digits read after 400 steps
    reading_loss = logits.sum() * 0
    for part in (digit_at, shown & ~digit_at):
        if part.any():
            reading_loss = reading_loss + F.cross_entropy(logits[part], reading_labels[part])
    pointer_loss = logits.sum() * 0
    if pointer_weight > 0:
        attention = _first_slot_attention(model, out.hidden_states[-2], key_padding, prompt_lengths)
        terms = []
        for i, seq in enumerate(sequences):
            if seq.pointer.any() and masks[i][0]:  # an unmasked first slot holds the answer itself: nothing to find
                block = attention[i, seq.visual_start: seq.visual_start + seq.pointer.shape[0]]
                terms.append(-torch.log(block[seq.pointer].sum() + 1e-6))
        if terms:
            pointer_loss = torch.stack(terms).mean()
    cue_loss, cue_acc = (logits.sum() * 0, 0.0) if cue_weight == 0 else \
        _cue_loss(model, out.hidden_states[-2], sequences, prompt_lengths, [bool(m[0]) for m in masks],
                  colour_token_ids)
    carry_loss = logits.sum() * 0
    if carry_weight > 0 and digit_at.any():
        digit_ids = digit_token_ids.to(reading_labels.device)
        target = (reading_labels[digit_at][:, None] == digit_ids[None]).float().argmax(-1)
        carry_loss = F.cross_entropy(_lens_logits(model, out.hidden_states[-2][digit_at], digit_ids), target)
    loss = answer + reading_weight * reading_loss + pointer_weight * pointer_loss + cue_weight * cue_loss \
        + carry_weight * carry_loss
    with torch.no_grad():
        first = torch.stack([logits[i, lp].argmax() == s.answer_ids[0] for i, (lp, s) in
                             enumerate(zip(prompt_lengths, sequences, strict=True)) if masks[i][0]]
                            or [torch.tensor(False)]).float().mean()  # over masked first slots only
        read = (logits[digit_at].argmax(-1) == reading_labels[digit_at]).float().mean() if digit_at.any() else first * 0
    stats = {"loss_answer": answer.item(), "loss_reading": reading_loss.item(),
             "loss_pointer": pointer_loss.item(), "answer_acc": first.item(), "reading_acc": read.item()}
    if cue_weight > 0:
        stats.update(loss_cue=cue_loss.item(), cue_acc=cue_acc)
    if carry_weight > 0:
        stats.update(loss_carry=carry_loss.item())
    return loss, stats
