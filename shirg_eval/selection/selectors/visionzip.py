"""``visionzip``: dominant tokens by attention received, plus contextual tokens merged from the rest.

Paper: Senqiao Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models", CVPR 2025
(arXiv:2412.04467; code github.com/dvlab-research/VisionZip). The rules, per image:

1. Dominant: the tokens with the highest attention at the layer the LM's features come from (LLaVA's layer -2;
   here the last kept SigLIP layer, whose output LaViDa reads).
2. Contextual: the remaining tokens, in raster order, are split into ``n_ctx`` targets taken every
   ``step = len(rest) // n_ctx`` positions and the others; each other token joins the target whose key (the
   layer's keys averaged over heads, L2-normalised) is most similar; each contextual token is the mean of its
   target and the tokens that joined it.
3. Output: dominant tokens (raster order), then the contextual tokens (in the order of their targets).

Adaptations, stated:

- SigLIP has no [CLS] token, whose attention row VisionZip sums over heads: the score is the mean attention each
  token *receives* over all queries and heads at that layer.
- Budget: ``k`` counts every token the LM receives (dominant + contextual). The split follows the paper's
  54+10 / 108+20 / 162+30 settings (``contextual_ratio = 10/64``): ``n_ctx = round(k * contextual_ratio)``.
- Merging happens on pre-projector features (as VisionZip merges the vision tower's hidden states); the visual
  path projects the ``k`` results.
- Multi-view input (anyres): one global top-k over all views' tokens (each view's attention sums to one, so scores
  are comparable across views), and contextual targets are spaced over the remaining tokens of all views.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_budget, check_float, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import complement, group_means, normalized, top_k_raster
from ..registry import register_selector

CONTEXTUAL_RATIO = 10 / 64  # the paper's dominant:contextual = 54:10 (also 108:20, 162:30)


def contextual_count(k: int, ratio: float) -> int:
    return min(k, round(k * ratio))


@register_selector("visionzip")
class VisionZipSelector(Selector):
    needs = SelectorNeeds(features=True, attention_layers=(-1,), keys=True, multi_view=True)

    def __init__(self, k: int = DEFAULT_K, contextual_ratio: float = CONTEXTUAL_RATIO) -> None:
        self.k = check_int("k", k)
        self.contextual_ratio = check_float("contextual_ratio", contextual_ratio, 0.0, 1.0)
        super().__init__(k=self.k, contextual_ratio=self.contextual_ratio)

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
        n = tokens.shape[1]
        check_budget(self.k, n, self.name)
        n_ctx = contextual_count(self.k, self.contextual_ratio)
        n_dom = self.k - n_ctx
        attention = context.attention_at(-1, self.name)
        metric = context.head_mean_keys()
        out, kept = [], []
        for b in range(tokens.shape[0]):
            dominant = top_k_raster(attention[b], n_dom)
            parts = [tokens[b].index_select(0, dominant)]
            if n_ctx:
                parts.append(self._contextual(tokens[b], metric[b], dominant, n_ctx))
            out.append(torch.cat(parts, dim=0))
            kept.append(dominant)
        info = {
            "selector": self.name,
            "k": self.k,
            "n_dominant": n_dom,
            "n_contextual": n_ctx,
            "n_scaffold": 0,
            "n_tokens": [int(t.shape[0]) for t in out],
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)

    @staticmethod
    def _contextual(x: Tensor, metric: Tensor, dominant: Tensor, n_ctx: int) -> Tensor:
        rest = complement(dominant, x.shape[0])
        step = max(1, rest.numel() // n_ctx)
        is_target = torch.zeros(rest.numel(), dtype=torch.bool, device=x.device)
        is_target[torch.arange(0, rest.numel(), step, device=x.device)[:n_ctx]] = True
        group = torch.empty(rest.numel(), dtype=torch.long, device=x.device)
        group[is_target] = torch.arange(n_ctx, device=x.device)
        with torch.no_grad():
            m = normalized(metric.index_select(0, rest))
            group[~is_target] = (m[~is_target] @ m[is_target].T).argmax(dim=-1)
        return group_means(x.index_select(0, rest), group, n_ctx)
