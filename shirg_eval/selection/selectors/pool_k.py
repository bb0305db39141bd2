"""``pool_k``: equal-count baseline, adaptive average pooling of the grid down to ``k`` cells.

The pooled shape ``(h, w)`` is chosen with ``h * w == k`` whenever some factor pair fits inside the grid
(``h <= H``, ``w <= W``); among those the one whose aspect ratio is nearest (in log space) to the grid's
wins, ties going to the smaller ``h``. So 768 on 48x48 -> 24x32, 1024 -> 32x32, 729 on 27x27 -> 27x27.
If no factor pair fits (e.g. a prime ``k`` larger than both sides) the nearest count is used instead and
``info["k_effective"]`` says so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base import DEFAULT_K, SelectionResult, Selector, check_int
from ..registry import register_selector


def pooled_shape(k: int, grid_hw: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` pooled grid for ``k`` tokens on ``grid_hw`` (see module docstring)."""
    gh, gw = grid_hw
    if k > gh * gw:
        raise ValueError(f"k={k} exceeds the number of grid tokens {gh}x{gw}={gh * gw}")
    target = math.log(gh / gw)
    best: tuple[tuple[int, float, int], tuple[int, int]] | None = None
    for h in range(1, gh + 1):
        # For each h the best w is the one closest to k / h (clamped to the grid).
        for w in {max(1, min(gw, k // h)), max(1, min(gw, -(-k // h)))}:
            # Rounded so mirror shapes (24x32 vs 32x24 on a square grid) tie exactly and h decides.
            key = (abs(h * w - k), round(abs(math.log(h / w) - target), 9), h)
            if best is None or key < best[0]:
                best = (key, (h, w))
    assert best is not None
    return best[1]


def _cell_centres(n_in: int, n_out: int) -> Tensor:
    # adaptive pooling cell i spans [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)).
    i = torch.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    return (start + end - 1) // 2


@register_selector("pool_k")
class PoolKSelector(Selector):
    def __init__(self, k: int = DEFAULT_K) -> None:
        self.k = check_int("k", k)
        super().__init__(k=self.k)

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        gh, gw = self.check_inputs(tokens, grid_hw, text_embeds)
        h, w = pooled_shape(self.k, (gh, gw))
        b, _, d = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, d, gh, gw)
        pooled = F.adaptive_avg_pool2d(grid, (h, w)).flatten(2).transpose(1, 2)  # [B, h*w, D]
        # For pictures: the grid cell at the centre of each pooled window (strictly increasing, so the
        # pooled raster order matches ascending kept indices).
        centres = (_cell_centres(gh, h)[:, None] * gw + _cell_centres(gw, w)[None, :]).reshape(-1)
        centres = centres.to(tokens.device)
        info = {
            "selector": self.name,
            "k": self.k,
            "k_effective": h * w,
            "pooled_hw": [h, w],
            "n_scaffold": 0,
            "n_tokens": [h * w] * b,
        }
        return SelectionResult(
            tokens=[pooled[i] for i in range(b)], kept_indices=[centres.clone() for _ in range(b)], info=info
        )
