"""``shirg_fixed``: fixed-K relevance selection with region coverage and an avg-pooled scaffold.

Score = ``alpha * z(text relevance) + (1 - alpha) * z(saliency)`` (saliency alone without a question).
Coverage keeps the best token of every ``region x region`` cell first so no part of the page vanishes,
then fills up to K with the globally best remaining tokens. The scaffold (cell averages, 144 tokens for
48x48 with region 4) gives the LM a cheap global view of what was dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import (
    DEFAULT_K,
    SelectionResult,
    Selector,
    check_bool,
    check_float,
    check_int,
    check_scaffold,
    coverage_topk,
    scaffold_tokens,
)
from ..registry import register_selector
from ..scoring import relevance_score


@register_selector("shirg_fixed")
class ShirgFixedSelector(Selector):
    def __init__(
        self,
        k: int = DEFAULT_K,
        region: int = 4,
        scaffold: bool | int = True,
        alpha: float = 0.7,
        coverage: bool = True,
    ) -> None:
        self.k = check_int("k", k)
        self.region = check_int("region", region)
        self.scaffold = check_scaffold(scaffold)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.coverage = check_bool("coverage", coverage)
        super().__init__(
            k=self.k, region=self.region, scaffold=self.scaffold, alpha=self.alpha, coverage=self.coverage
        )

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        grid = self.check_inputs(tokens, grid_hw, text_embeds)
        scores = relevance_score(tokens, text_embeds, self.alpha)  # [B, N], no grad
        scaffold = scaffold_tokens(tokens, grid, self.region) if self.scaffold else None
        out, kept = [], []
        for b in range(tokens.shape[0]):
            idx = coverage_topk(scores[b], grid, self.k, self.region, self.coverage)
            sel = tokens[b].index_select(0, idx)  # differentiable gather, raster order
            out.append(sel if scaffold is None else torch.cat([sel, scaffold[b]], dim=0))
            kept.append(idx)
        n_scaffold = 0 if scaffold is None else int(scaffold.shape[1])
        info = {
            "selector": self.name,
            "k": self.k,
            "n_scaffold": n_scaffold,
            "n_tokens": [int(t.shape[0]) for t in out],
            "alpha": self.alpha,
            "region": self.region,
            "coverage": self.coverage,
            "text_conditioned": text_embeds is not None and text_embeds.shape[1] > 0,
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
