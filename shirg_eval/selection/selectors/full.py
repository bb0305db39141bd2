"""``full``: keep every token (the ``lavida_672`` baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import SelectionResult, Selector
from ..registry import register_selector


@register_selector("full")
class FullSelector(Selector):
    def __init__(self) -> None:
        super().__init__()

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        self.check_inputs(tokens, grid_hw, text_embeds)
        n = tokens.shape[1]
        kept = torch.arange(n, device=tokens.device)
        return SelectionResult(
            tokens=[tokens[b] for b in range(tokens.shape[0])],
            kept_indices=[kept.clone() for _ in range(tokens.shape[0])],
            info={"selector": self.name, "k": n, "n_scaffold": 0, "n_tokens": [n] * tokens.shape[0]},
        )
