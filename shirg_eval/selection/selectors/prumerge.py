"""``prumerge`` (and ``plus=True`` for PruMerge+): attention outliers kept, every pruned token merged into them.

Paper: Yuzhang Shang, Mu Cai, Bingxin Xu, Yong Jae Lee, Yan Yan, "LLaVA-PruMerge: Adaptive Token Reduction for
Efficient Large Multimodal Models", 2024 (arXiv:2403.15388; code github.com/42Shawn/LLaVA-PruMerge). The method:

1. Score every token by attention at the vision tower's last layers (the [CLS] row in CLIP).
2. Keep the outliers by the interquartile rule: scores above ``Q3 + 1.5 * IQR``.
3. PruMerge+ adds spatially uniform samples of the other tokens, so that every part of the image keeps some.
4. Merge: each kept token absorbs the information of similar pruned tokens (similarity of the layer's keys),
   weighted by their attention.

Adaptations, stated:

- SigLIP has no [CLS]: the score is the mean attention each token receives over queries and heads at the last kept
  layer (LaViDa's feature layer); similarity is the cosine of that layer's keys (all heads, as PruMerge).
- Exact budget ``k`` (LM-side tokens). PruMerge's count is adaptive (the outlier count); here the outlier set is
  what the method keeps first: with more than ``k`` outliers the ``k`` strongest stay; with fewer, plain PruMerge
  fills up with the next-highest scores and PruMerge+ with tokens evenly spaced (in raster order) over the
  remaining positions, its spatial sampling made exact. ``info["n_outliers"]`` records the adaptive count.
- Merging is a partition: each pruned token joins the kept token with the most similar key, and every kept token
  becomes the attention-weighted mean of itself and the tokens that joined it. (PruMerge's code adds to each kept
  token the attention-weighted *sum* of its 32 nearest tokens, so a pruned token can count several times or not at
  all, and appends one extra token; neither is done here.)
- Merging happens on pre-projector features (as PruMerge merges the tower's features); the visual path projects
  the ``k`` results.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_bool, check_budget, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import complement, group_means, nearest, top_k_raster
from ..registry import register_selector


@torch.no_grad()
def iqr_outliers(scores: Tensor) -> int:
    """How many scores lie above ``Q3 + 1.5 * IQR`` (quantiles interpolated linearly, as numpy's percentile)."""
    s = scores.detach().float()
    q1, q3 = torch.quantile(s, torch.tensor([0.25, 0.75], device=s.device)).tolist()
    return int((s > q3 + 1.5 * (q3 - q1)).sum())


def evenly_spaced(candidates: Tensor, count: int) -> Tensor:
    """``count`` members of the ascending ``candidates``, spread evenly over them (centre of each stretch)."""
    n = candidates.numel()
    pos = ((torch.arange(count, device=candidates.device) * 2 + 1) * n) // (2 * count)
    return candidates[pos]


@register_selector("prumerge")
class PruMergeSelector(Selector):
    needs = SelectorNeeds(features=True, attention_layers=(-1,), keys=True, multi_view=True)

    def __init__(self, k: int = DEFAULT_K, plus: bool = False) -> None:
        self.k = check_int("k", k)
        self.plus = check_bool("plus", plus)
        super().__init__(k=self.k, plus=self.plus)

    def keep(self, scores: Tensor) -> tuple[Tensor, int]:
        """(ascending kept indices, number of IQR outliers) for one image."""
        n_out = iqr_outliers(scores)
        if not self.plus or n_out >= self.k:
            return top_k_raster(scores, self.k), n_out
        base = top_k_raster(scores, n_out)
        extra = evenly_spaced(complement(base, scores.numel()), self.k - n_out)
        return torch.cat([base, extra]).sort().values, n_out

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
        attention = context.attention_at(-1, self.name)
        keys = context.keys
        if keys is None:
            raise ValueError(f"{self.name} needs the read layer's keys in the context")
        out, kept, outliers = [], [], []
        for b in range(tokens.shape[0]):
            idx, n_out = self.keep(attention[b])
            pruned = complement(idx, n)
            group = torch.cat([torch.arange(self.k, device=idx.device), nearest(keys[b][pruned], keys[b][idx])])
            members = torch.cat([idx, pruned])
            out.append(group_means(tokens[b].index_select(0, members), group, self.k, attention[b][members]))
            kept.append(idx)
            outliers.append(n_out)
        info = {
            "selector": self.name,
            "k": self.k,
            "plus": self.plus,
            "n_outliers": outliers,
            "n_scaffold": 0,
            "n_tokens": [int(t.shape[0]) for t in out],
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
