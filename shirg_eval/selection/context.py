"""What a selector may ask for beyond the projected tokens, and the object that carries it.

A selector class declares :class:`SelectorNeeds`; the visual path computes exactly that and nothing more, then
calls ``select(..., context=SelectionContext)``. Selectors that declare nothing (``shirg_fixed``, ``pool_k``, ...)
are called as before, without a context, so they stay as small as they are.

- ``features``: the selector works on pre-projector SigLIP features (``[B, N, mm_hidden]``) instead of projected
  tokens and returns tokens in that space; the visual path projects only what it returns.
- ``attention_layers``: the mean attention each token *receives* at these tower layers (``-1``: the layer LaViDa
  reads, i.e. the last kept one), ``[B, N]`` per layer. Computed from that layer's queries and keys, captured by a
  forward hook (:mod:`shirg_eval.model.tower_probe`); the tower keeps running on SDPA.
- ``keys``: the keys of the read layer, ``[B, N, C]`` (all heads concatenated), e.g. as a similarity metric.
- ``lm_layers``: an in-LM method (FastV): the visual path keeps every token and the LM prefill selects after this
  many layers.
- ``multi_view``: the selector accepts LaViDa's anyres input (``SelectionContext.layout`` describes the views).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["SelectionContext", "SelectorNeeds", "ViewLayout"]


@dataclass(frozen=True)
class SelectorNeeds:
    features: bool = False
    attention_layers: tuple[int, ...] = ()
    keys: bool = False
    lm_layers: int = 0
    multi_view: bool = False

    @property
    def tower_probe(self) -> bool:
        """Whether the vision tower must be probed (attention or keys)."""
        return bool(self.attention_layers) or self.keys

    @property
    def uses_context(self) -> bool:
        return self.features or self.tower_probe or self.lm_layers > 0 or self.multi_view


@dataclass(frozen=True)
class ViewLayout:
    """How the token sequence a selector sees is made of views.

    Single view: one view covering all ``N`` tokens. LaViDa's anyres: view 0 is the whole image at the tower's
    native size (``side x side`` tokens, first in the sequence), then the tile map -- the tiles placed as the image
    (``rows*side x cols*side``) in raster order, as LaViDa feeds it to the LM (before unpadding and newlines).

    ``view_of[i]``: the view token ``i`` comes from (0 = the whole image, ``t + 1`` = tile ``t`` in raster order).
    ``global_to_view[j]``: for each of the global view's ``side*side`` positions, the tile (view id) that covers
    the same part of the image (anyres only).
    """

    n_views: int
    view_of: Tensor  # [N] long
    side: int | None = None
    tile_grid: tuple[int, int] | None = None  # (columns, rows) of the anyres tiles
    global_to_view: Tensor | None = None  # [side*side] long, anyres only

    @classmethod
    def single(cls, n_tokens: int, device: torch.device | str = "cpu") -> ViewLayout:
        return cls(1, torch.zeros(n_tokens, dtype=torch.long, device=device))

    @property
    def is_multi_view(self) -> bool:
        return self.n_views > 1


@dataclass
class SelectionContext:
    """Everything the visual path computed because the selector declared it (see :class:`SelectorNeeds`)."""

    layout: ViewLayout
    attention: dict[int, Tensor] = field(default_factory=dict)  # layer (-1 = read layer) -> [B, N] float32
    keys: Tensor | None = None  # [B, N, C] read-layer keys, float32, no grad
    n_heads: int = 1

    def attention_at(self, layer: int, who: str) -> Tensor:
        if layer not in self.attention:
            raise ValueError(
                f"{who} needs the tower attention at layer {layer}, which the context does not hold; declare it "
                f"in the selector's `needs` (got layers {sorted(self.attention)})"
            )
        return self.attention[layer]

    def head_mean_keys(self) -> Tensor:
        """``[B, N, C / n_heads]``: keys averaged over heads (ToMe's and VisionZip's similarity metric)."""
        if self.keys is None:
            raise ValueError("the context holds no keys; declare `keys=True` in the selector's needs")
        b, n, c = self.keys.shape
        return self.keys.view(b, n, self.n_heads, c // self.n_heads).mean(dim=2)
