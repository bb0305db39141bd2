"""Reading guidance for the QA stage: two auxiliary losses that make "answer from the image" learnable from scratch.

With the answer loss alone, three recipes here (and three before them) learned the answer format and the digit
prior but never the image: the one label per question reaches the projector and the LM only through attention that
is still uniform over ~1,000 visual positions, so its gradient is all but zero. The renderer knows where every
digit is and which cue colour lies under it, and the dense heads of stage 1 read both from the frozen tower, so two
dense signals can be added (they exist only in training; the checkpoint is LaViDa's layout as always):

* **reading**: at every visual position that shows a digit, the LM head (through all LM layers) predicts that
  digit's token (optionally, at the other positions of a cued region, the colour's word). The projector and LM
  learn to carry what the tower reads into the LM's own token space.
* **pointer**: the last LM layer's attention from the first answer slot (averaged over heads) puts its mass on the
  visual positions that show a digit inside the region of the asked colour: ``-log(sum of that mass)``. The LM
  learns where to look; the answer loss then only has to learn to copy what it sees.

Labels come from the dense heads' probabilities, pooled and laid out exactly as the release path's visual block
(:meth:`LavidaModel.release_embeds`): a position is a digit when the heads give digits at least 0.3 of their mass
(a 2x2-pooled position mixes four patches, so a glyph in one of them rarely reaches 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ..data.reading import COLOUR_NAMES
from ..model.lavida import IMAGE_TOKEN_INDEX, LavidaModel
from ..model.preprocess import ImageViews
from ..training.loss import answer_loss, noise_answers
from .dense import BACKGROUND, ReadingHeads
from .qa import answer_ids

IGNORE = -100
DIGIT_MASS = 0.3  # share of the heads' probability on digits above which a pooled position counts as a digit


@dataclass
class GuidedSequence:
    prompt_embeds: torch.Tensor  # [Lp, D]: text with the visual block spliced in
    answer_ids: torch.Tensor  # [La]
    visual_start: int  # first visual position in the prompt
    digit_labels: torch.Tensor  # [Lv] token id of the digit shown at each visual position, or IGNORE
    pointer: torch.Tensor  # [Lv] bool: digit positions inside the asked region


def _layout(model: LavidaModel, per_view: torch.Tensor, views: ImageViews, newline: torch.Tensor | None) -> torch.Tensor:
    """Pool ``[V, N, C]`` per-patch maps and lay them out as the release path's visual block (``[Lv, C]``)."""
    return model.layout_block(model.pool_2d(per_view, mode=model.config.mm_spatial_pool_mode), views, newline)


def release_block(model: LavidaModel, heads: ReadingHeads, views: ImageViews,
                  digit_token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The release path's visual block and, per position, the digit token it shows (or IGNORE) and its cue colour
    (0 = none, ``i + 1`` = ``COLOUR_NAMES[i]``)."""
    features = model.encode_views(views.pixel_values)
    with torch.no_grad():
        digit_logits, colour_logits = heads(features.float())
        no_fill = features.new_zeros(BACKGROUND + 1, dtype=torch.float32)
        digits = _layout(model, digit_logits.softmax(-1), views, no_fill)
        colours = _layout(model, colour_logits.softmax(-1), views, no_fill[: colour_logits.shape[-1]])
        shown = digits[:, :BACKGROUND].argmax(-1)
        is_digit = digits[:, :BACKGROUND].sum(-1) >= DIGIT_MASS
        labels = torch.where(is_digit, digit_token_ids.to(shown.device)[shown], torch.full_like(shown, IGNORE))
    embeds = _layout(model, model.project(features), views, None)
    return embeds, labels, colours.argmax(-1)


def guided_sequences(model: LavidaModel, tokenizer, heads: ReadingHeads, sample, prompt_ids,
                     digit_token_ids: torch.Tensor, colour_token_ids: torch.Tensor | None = None) -> list[GuidedSequence]:
    """One image's training sequences (its views encoded once for all its questions).

    With ``colour_token_ids`` (the questions' colour words, in ``COLOUR_NAMES`` order), positions inside a cued
    region that show no digit are read as their colour's word: the visual side of the cue the question names.
    """
    embeds, digits, colours = release_block(model, heads, sample.views, digit_token_ids)
    labels = digits
    if colour_token_ids is not None:
        coloured = (digits == IGNORE) & (colours > 0)
        labels = torch.where(coloured, colour_token_ids.to(colours.device)[(colours - 1).clamp(min=0)], digits)
    sequences = []
    for q in sample.questions:
        ids = prompt_ids(q.prompt)
        flat = ids.flatten()
        start = int((flat == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
        cue = COLOUR_NAMES.index(q.cue) + 1
        sequences.append(GuidedSequence(model.embed_prompt(ids, embeds)[0],
                                        answer_ids(tokenizer, q.answer, q.gen_length).to(embeds.device),
                                        start, labels, (digits != IGNORE) & (colours == cue)))
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


def guided_loss(model: LavidaModel, sequences: list[GuidedSequence], mask_id: int, *, reading_weight: float,
                pointer_weight: float, full_mask: bool, generator: torch.Generator | None = None,
                eps: float = 1e-3) -> tuple[torch.Tensor, dict[str, float]]:
    """Answer loss (masked diffusion as :func:`~shirg_eval.training.loss.masked_diffusion_loss`, or with
    ``full_mask`` every answer slot masked, i.e. cross-entropy) + the two guidance losses (module docstring)."""
    noised = noise_answers(model, sequences, mask_id, eps, generator, full_mask)
    batch, longest = noised.key_padding.shape
    masks, prompt_lengths, key_padding = noised.masks, noised.prompt_lengths, noised.key_padding
    reading_labels = torch.full((batch, longest), IGNORE, dtype=torch.long, device=key_padding.device)
    for i, seq in enumerate(sequences):
        reading_labels[i, seq.visual_start: seq.visual_start + seq.digit_labels.shape[0]] = seq.digit_labels
    out = model.forward(noised.embeds, key_padding=key_padding, output_hidden_states=pointer_weight > 0)
    logits = out.logits.float()  # every position: the reading loss scores the visual block
    answer = answer_loss(logits, sequences, noised)
    shown = reading_labels != IGNORE
    reading_loss = F.cross_entropy(logits[shown], reading_labels[shown]) if shown.any() else logits.sum() * 0
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
    loss = answer + reading_weight * reading_loss + pointer_weight * pointer_loss
    with torch.no_grad():
        first = torch.stack([logits[i, lp].argmax() == s.answer_ids[0] for i, (lp, s) in
                             enumerate(zip(prompt_lengths, sequences, strict=True)) if masks[i][0]]
                            or [torch.tensor(False)]).float().mean()  # over masked first slots only
        read = (logits[shown].argmax(-1) == reading_labels[shown]).float().mean() if shown.any() else first * 0
    stats = {"loss_answer": answer.item(), "loss_reading": reading_loss.item(),
             "loss_pointer": pointer_loss.item(), "answer_acc": first.item(), "reading_acc": read.item()}
    return loss, stats
