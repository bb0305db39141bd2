"""``tome``: bipartite soft matching, repeated until exactly ``k`` tokens remain.

Paper: Daniel Bolya, Cheng-Yang Fu, Xiaoliang Dai, Peizhao Zhang, Christoph Feichtenhofer, Judy Hoffman, "Token
Merging: Your ViT But Faster", ICLR 2023 (arXiv:2210.09461; code github.com/facebookresearch/ToMe). One round of
bipartite soft matching with ``r`` merges:

1. Split the tokens alternately into sets A (even positions) and B (odd positions).
2. Each A token's edge goes to its most similar B token (cosine of the keys averaged over heads).
3. The ``r`` A tokens with the strongest edges are merged into their B token (size-weighted average); the others
   stay. ``r`` is at most half the tokens.

Adaptations, stated:

- ToMe merges ``r`` tokens inside every ViT block with that block's keys and then uses proportional attention in
  the later blocks. As a reducer after the tower (LaViDa's tower is frozen and its features are read at one
  layer), the rounds run back to back on the read layer's keys until ``k`` remain (2304 -> 1152 -> 576 -> ... ->
  ``k``; each round merges ``min(n - k, n // 2)``). A merged token's key is the mean of its members' keys; there
  are no later blocks, so no proportional attention.
- Merged tokens are the plain means of the pre-projector features they contain (ToMe's size-weighted averages
  compose to exactly that); the visual path projects the ``k`` results.
- Output order: each merged token sits at the position of the B token that absorbed the others (the position
  that survived), in raster order; ``kept_indices`` are those positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_budget, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import group_means, normalized
from ..registry import register_selector


@torch.no_grad()
def bipartite_merge_to(metric: Tensor, k: int) -> tuple[Tensor, Tensor, int]:
    """Group id ``[N]`` of every token, the surviving positions ``[k]`` (ascending), and the number of rounds."""
    n = metric.shape[0]
    device = metric.device
    owner = torch.arange(n, device=device)  # token -> current slot
    rep = torch.arange(n, device=device)  # slot -> surviving position (ascending)
    msum = metric.detach().float().clone()  # slot -> sum of member keys
    size = torch.ones(n, device=device)
    rounds = 0
    while rep.numel() > k:
        m = rep.numel()
        r = min(m - k, m // 2)
        a_slots = torch.arange(0, m, 2, device=device)
        b_slots = torch.arange(1, m, 2, device=device)
        unit = normalized(msum / size[:, None])
        node_max, node_idx = (unit[a_slots] @ unit[b_slots].T).max(dim=-1)
        edges = torch.sort(node_max, descending=True, stable=True).indices[:r]
        src, dst = a_slots[edges], b_slots[node_idx[edges]]
        target = torch.arange(m, device=device)
        target[src] = dst
        survives = torch.ones(m, dtype=torch.bool, device=device)
        survives[src] = False
        compact = torch.cumsum(survives, 0) - 1
        slot_map = compact[target]  # old slot -> new slot
        owner = slot_map[owner]
        msum = msum.new_zeros(m - r, msum.shape[1]).index_add(0, slot_map, msum)
        size = size.new_zeros(m - r).index_add(0, slot_map, size)
        rep = rep[survives]
        rounds += 1
    return owner, rep, rounds


@register_selector("tome")
class ToMeSelector(Selector):
    needs = SelectorNeeds(features=True, keys=True, multi_view=True)

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
        self.check_inputs(tokens, grid_hw)
        context = self.require_context(context, tokens)
        check_budget(self.k, tokens.shape[1], self.name)
        metric = context.head_mean_keys()
        out, kept, rounds = [], [], []
        for b in range(tokens.shape[0]):
            owner, rep, n_rounds = bipartite_merge_to(metric[b], self.k)
            out.append(group_means(tokens[b], owner, self.k))
            kept.append(rep)
            rounds.append(n_rounds)
        info = {
            "selector": self.name,
            "k": self.k,
            "rounds": rounds,
            "n_scaffold": 0,
            "n_tokens": [int(t.shape[0]) for t in out],
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
