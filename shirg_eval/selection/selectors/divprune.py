"""``divprune``: the most diverse ``k`` tokens, by greedy max-min cosine distance.

Paper: Saeed Ranjbar Alvar, Gursimran Singh, Mohammad Akbari, Yong Zhang, "DivPrune: Diversity-based Visual Token
Pruning for Large Multimodal Models", CVPR 2025 (arXiv:2503.02175; code github.com/vbdi/divprune). DivPrune
treats pruning as a max-min diversity problem and solves it greedily on the LM-input visual tokens (after the
projector), with cosine distance ``1 - cos(x_i, x_j)``:

1. The first token is the one farthest from its nearest neighbour.
2. Each next token is the one whose minimum distance to the tokens already chosen is largest.
3. The chosen tokens go to the LM in their original (raster) order.

Adaptations, stated: the distance matrix is computed once (``[N, N]`` from the normalised tokens; on a CPU from its
upper-triangle blocks) and the running minimum is updated per step, which gives the same choices as DivPrune's re-evaluation of
the minimum over the chosen rows; chosen tokens are excluded explicitly, so exact duplicates (distance 0, e.g. a
flat image) can never be chosen twice and exactly ``k`` distinct tokens come back. Not text-conditioned; on anyres
input the whole multi-view set is one pool.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_budget, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import normalized
from ..registry import register_selector

_GRAM_BLOCK = 384


@torch.no_grad()
def gram(x: Tensor) -> Tensor:
    """``x @ x.T``; on a CPU from the upper-triangle blocks only (the same products, ~1.7x faster at 2304 x 4096)."""
    n = x.shape[0]
    if x.device.type != "cpu" or n <= _GRAM_BLOCK:
        return x @ x.T
    out = x.new_empty(n, n)
    for i in range(0, n, _GRAM_BLOCK):
        for j in range(i, n, _GRAM_BLOCK):
            block = x[i : i + _GRAM_BLOCK] @ x[j : j + _GRAM_BLOCK].T
            out[i : i + _GRAM_BLOCK, j : j + _GRAM_BLOCK] = block
            if j != i:
                out[j : j + _GRAM_BLOCK, i : i + _GRAM_BLOCK] = block.T
    return out


@torch.no_grad()
def max_min_diverse(tokens: Tensor, k: int) -> Tensor:
    """Ascending indices of ``k`` tokens chosen greedily to maximise the minimum pairwise cosine distance."""
    x = normalized(tokens)
    n = x.shape[0]
    dist = 1.0 - gram(x)  # [N, N]
    chosen = torch.empty(k, dtype=torch.long, device=tokens.device)
    if n == 1:
        return torch.zeros(k, dtype=torch.long, device=tokens.device)
    # Nearest-neighbour distance of every token, itself excluded.
    nn_dist = dist.clone().fill_diagonal_(torch.inf).amin(dim=0)
    chosen[0] = torch.argmax(nn_dist)
    min_dist = dist[chosen[0]].clone()
    taken = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    taken[chosen[0]] = True
    for i in range(1, k):
        nxt = torch.argmax(min_dist.masked_fill(taken, -torch.inf))
        chosen[i] = nxt
        taken[nxt] = True
        torch.minimum(min_dist, dist[nxt], out=min_dist)
    return chosen.sort().values


@register_selector("divprune")
class DivPruneSelector(Selector):
    needs = SelectorNeeds(multi_view=True)

    def __init__(self, k: int = DEFAULT_K) -> None:
        self.k = check_int("k", k)
        super().__init__(k=self.k)

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
        context: SelectionContext | None = None,
    ) -> SelectionResult:
        self.check_inputs(tokens, grid_hw, text_embeds)
        check_budget(self.k, tokens.shape[1], self.name)
        kept = [max_min_diverse(tokens[b], self.k) for b in range(tokens.shape[0])]
        out = [tokens[b].index_select(0, idx) for b, idx in enumerate(kept)]
        info = {"selector": self.name, "k": self.k, "n_scaffold": 0, "n_tokens": [self.k] * tokens.shape[0]}
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
