"""``dart``: pivot tokens, then for each pivot the tokens least duplicated with it.

Paper: Zichen Wen et al., "Stop Looking for Important Tokens in Multimodal Language Models: Duplication Matters
More" (DART), 2025 (arXiv:2502.11494; code github.com/ZichenWen1/DART). DART's rules:

1. Pivots: a few tokens with the largest L1 norm (of their keys, at the LM layer where DART prunes; 4 image + 4
   text pivots by default).
2. For each pivot in turn, the ``quota`` tokens with the lowest cosine similarity to it are kept and leave the
   candidate pool, so later pivots cannot take them again.
3. The kept tokens go on in their original order.

Adaptations, stated -- this is DART *as a pre-LM reducer*:

- It runs on the projected visual tokens before the LM, so the pivots are the 8 visual tokens with the largest
  L1 norm of the token itself (there are no LM keys yet, and no text pivots: the reducer sees the image only), and
  similarity is the cosine of the projected tokens (DART uses the LM's normalised hidden states at its layer).
- Exact budget: ``k`` = pivots + kept duplicates-free tokens. DART's per-pivot quota ``ceil(budget // pivots)`` does
  not add up to the budget; here the ``k - pivots`` slots are split as evenly as possible (the first pivots, in
  norm order, take one more).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_budget, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import normalized
from ..registry import register_selector

DEFAULT_PIVOTS = 8  # DART's 4 image + 4 text pivots, all visual here


@torch.no_grad()
def dart_keep(tokens: Tensor, k: int, n_pivots: int) -> tuple[Tensor, Tensor]:
    """(ascending kept indices, pivot indices in norm order) for one image's ``[N, D]`` tokens."""
    n = tokens.shape[0]
    p = min(n_pivots, k)
    norms = tokens.detach().float().abs().sum(dim=-1)
    pivots = torch.sort(norms, descending=True, stable=True).indices[:p]
    x = normalized(tokens)
    available = torch.ones(n, dtype=torch.bool, device=tokens.device)
    available[pivots] = False
    rest = k - p
    kept = [pivots]
    for i in range(p):
        quota = rest // p + (1 if i < rest % p else 0)
        if quota == 0:
            continue
        sim = (x @ x[pivots[i]]).masked_fill(~available, torch.inf)
        # Lowest similarity first; ties go to the lower index.
        take = torch.sort(sim, stable=True).indices[:quota]
        available[take] = False
        kept.append(take)
    return torch.cat(kept).sort().values, pivots


@register_selector("dart")
class DartSelector(Selector):
    needs = SelectorNeeds(multi_view=True)

    def __init__(self, k: int = DEFAULT_K, pivots: int = DEFAULT_PIVOTS) -> None:
        self.k = check_int("k", k)
        self.pivots = check_int("pivots", pivots)
        super().__init__(k=self.k, pivots=self.pivots)

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
        kept = [dart_keep(tokens[b], self.k, self.pivots)[0] for b in range(tokens.shape[0])]
        out = [tokens[b].index_select(0, idx) for b, idx in enumerate(kept)]
        info = {
            "selector": self.name,
            "k": self.k,
            "pivots": min(self.pivots, self.k),
            "n_scaffold": 0,
            "n_tokens": [self.k] * tokens.shape[0],
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
