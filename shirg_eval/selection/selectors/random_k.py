"""``random_k``: seeded random K tokens under the same region-coverage rule as ``shirg_fixed``.

Drawing iid uniform scores and reusing the coverage top-k gives exactly the wanted distribution: a
uniformly random token per region (argmax of iid uniforms), then a uniformly random fill of the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import (
    DEFAULT_K,
    SelectionResult,
    Selector,
    check_bool,
    check_int,
    check_scaffold,
    coverage_topk,
    scaffold_tokens,
)
from ..registry import register_selector


@register_selector("random_k")
class RandomKSelector(Selector):
    def __init__(
        self,
        k: int = DEFAULT_K,
        region: int = 4,
        coverage: bool = True,
        seed: int | None = 0,
        scaffold: bool | int = False,
    ) -> None:
        self.k = check_int("k", k)
        self.region = check_int("region", region)
        self.coverage = check_bool("coverage", coverage)
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self.scaffold = check_scaffold(scaffold)
        super().__init__(
            k=self.k, region=self.region, coverage=self.coverage, seed=self.seed, scaffold=self.scaffold
        )

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        grid = self.check_inputs(tokens, grid_hw, text_embeds)
        if generator is None:
            # A fresh generator per call from ``seed``: the same input always gives the same picks.
            generator = torch.Generator()
            if self.seed is not None:
                generator.manual_seed(self.seed)
            else:
                generator.seed()
        b_size, n, _ = tokens.shape
        # Draw on the generator's device, then move: works for CPU generators with GPU tokens.
        scores = torch.rand(b_size, n, generator=generator, device=generator.device).to(tokens.device)
        scaffold = scaffold_tokens(tokens, grid, self.region) if self.scaffold else None
        out, kept = [], []
        for b in range(b_size):
            idx = coverage_topk(scores[b], grid, self.k, self.region, self.coverage)
            sel = tokens[b].index_select(0, idx)
            out.append(sel if scaffold is None else torch.cat([sel, scaffold[b]], dim=0))
            kept.append(idx)
        info = {
            "selector": self.name,
            "k": self.k,
            "n_scaffold": 0 if scaffold is None else int(scaffold.shape[1]),
            "n_tokens": [int(t.shape[0]) for t in out],
            "region": self.region,
            "coverage": self.coverage,
            "seed": self.seed,
        }
        return SelectionResult(tokens=out, kept_indices=kept, info=info)
