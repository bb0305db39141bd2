"""``hired``: split the budget across views by the global view's attention, then keep each view's top tokens.

Paper: Kazi Hasan Ibn Arif et al., "HiRED: Attention-Guided Token Dropping for Efficient Inference of
High-Resolution Vision-Language Models", AAAI 2025 (arXiv:2408.10945; code github.com/hasanar1f/HiRED). For a
multi-view (anyres) image, HiRED:

1. gives the full-image view ``alpha`` of the budget (at most its token count; ``alpha = 0.5`` in the paper);
2. splits the rest across the sub-images in proportion to how many of the full view's top ``(1 - alpha) * N``
   tokens, ranked by attention at the *first* encoder layer, fall on each sub-image;
3. keeps, in every view, its highest-attention tokens at the *feature* layer within that view's budget.

Here the views are LaViDa's anyres views: view 0 is the whole image, the tiles are the sub-images. On a single view
(the 672 px path) there is nothing to split: HiRED reduces to its single-partition version, the top ``k`` tokens by
attention at the feature layer.

Adaptations, stated:

- SigLIP has no [CLS]: scores are the mean attention each token receives (over queries and heads), at layer 0 for
  the split and at the last kept layer (the one LaViDa reads) for the choice.
- Which sub-image a global-view token "falls on" is computed geometrically: the global view is the whole image
  stretched to 384 px, the tiles cut the padded canvas, so each global position is mapped through the same
  resize-and-pad onto the tile that covers it. (HiRED's code reshapes the full view's flat token list into as many
  contiguous raster chunks as there are sub-images instead.)
- Exact budget: the per-view quotas are rounded by largest remainder, with every view capped at its token count and
  any excess handed to the views with room, so exactly ``k`` tokens come back (HiRED floors each quota).
- Tokens are emitted in LaViDa's order: global view first, then the tile map in raster order (as HiRED, no
  newline tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_budget, check_float, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import top_k_raster
from ..registry import register_selector


def apportion(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at most its cap (largest remainder).

    Views with zero weight get a share only when no weighted view has room left; all-zero weights split evenly.
    """
    if total > sum(caps):
        raise ValueError(f"cannot place {total} tokens in views holding {sum(caps)}")
    alloc = [0] * len(caps)
    left = total
    while left > 0:
        room = [c - a for c, a in zip(caps, alloc, strict=True)]
        open_ = [i for i, r in enumerate(room) if r > 0]
        w = [max(float(weights[i]), 0.0) for i in open_]
        if sum(w) <= 0:
            w = [1.0] * len(open_)
        ideal = [left * wi / sum(w) for wi in w]
        give = [min(math.floor(q), room[i]) for q, i in zip(ideal, open_, strict=True)]
        if sum(give) == 0:  # only fractions left: one each, largest remainder first, then weight, then index
            order = sorted(range(len(open_)), key=lambda j: (-(ideal[j] - math.floor(ideal[j])), -w[j], open_[j]))
            for j in order[:left]:
                give[j] = 1
        for j, i in enumerate(open_):
            alloc[i] += give[j]
        left -= sum(give)
    return alloc


@register_selector("hired")
class HiredSelector(Selector):
    needs = SelectorNeeds(features=True, attention_layers=(0, -1), multi_view=True)

    def __init__(self, k: int = DEFAULT_K, alpha: float = 0.5) -> None:
        self.k = check_int("k", k)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        super().__init__(k=self.k, alpha=self.alpha)

    def needs_for(self, multi_view: bool) -> SelectorNeeds:
        # One view: nothing to split, so the first layer's attention is not computed.
        return self.needs if multi_view else SelectorNeeds(features=True, attention_layers=(-1,), multi_view=True)

    def view_budgets(self, first_layer_attention: Tensor, context: SelectionContext) -> list[int]:
        """Tokens per view: ``alpha * k`` to the global view, the rest split by its top first-layer tokens."""
        layout = context.layout
        side2 = int(layout.side) ** 2
        n_tiles = layout.n_views - 1
        full = min(round(self.k * self.alpha), side2)
        top = top_k_raster(first_layer_attention[:side2], int(side2 * (1 - self.alpha)))
        counts = torch.bincount(layout.global_to_view[top] - 1, minlength=n_tiles).tolist()
        rest = self.k - full
        tiles = apportion(min(rest, n_tiles * side2), counts, [side2] * n_tiles)
        return [full + rest - sum(tiles), *tiles]

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
        context: SelectionContext | None = None,
    ) -> SelectionResult:
        self.check_inputs(tokens, grid_hw)
        context = self.require_context(context, tokens)
        check_budget(self.k, tokens.shape[1], self.name)
        layout = context.layout
        chosen = context.attention_at(-1, self.name)
        out, kept, budgets = [], [], []
        for b in range(tokens.shape[0]):
            if not layout.is_multi_view:
                idx, per_view = top_k_raster(chosen[b], self.k), [self.k]
            else:
                per_view = self.view_budgets(context.attention_at(0, self.name)[b], context)
                parts = []
                for v, budget in enumerate(per_view):
                    members = (layout.view_of == v).nonzero().flatten()
                    parts.append(members[top_k_raster(chosen[b][members], budget)])
                idx = torch.cat(parts).sort().values
            out.append(tokens[b].index_select(0, idx))
            kept.append(idx)
            budgets.append(per_view)
        info = {
            "selector": self.name,
            "k": self.k,
            "alpha": self.alpha,
            "view_budgets": budgets,
            "n_scaffold": 0,
            "n_tokens": [int(t.shape[0]) for t in out],
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
