"""Per-token scores used to rank visual tokens.

All functions return float32 ``[B, N]`` tensors computed under ``torch.no_grad()`` on detached inputs:
selection is a discrete choice, so only the later gather/mean carries gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "centre_distance",
    "relevance_score",
    "saliency",
    "standardize",
    "text_relevance",
]

_EPS = 1e-6


@torch.no_grad()
def text_relevance(tokens: Tensor, text_embeds: Tensor) -> Tensor:
    """``[B, N]``: max over question tokens of cosine(visual token, text token)."""
    if text_embeds.shape[1] == 0:
        raise ValueError("text_relevance needs at least one text token (text_embeds has T=0)")
    t = tokens.detach().float()
    q = text_embeds.detach().float()
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    # Divide by the visual norms after the matmul instead of normalising [B, N, D]: same result,
    # one fewer full-size temporary (N*D is 2304*4096 for a 672 view).
    sim = torch.bmm(t, q.transpose(1, 2))  # [B, N, T]
    sim = sim / t.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return sim.amax(dim=-1)


@torch.no_grad()
def saliency(tokens: Tensor) -> Tensor:
    """``[B, N]``: each token's (population) variance across channels."""
    x = tokens.detach().float()
    # E[x^2] - E[x]^2 from two fast reductions; Tensor.var over the last dim of a [1, 2304, 4096]
    # tensor is ~20x slower on CPU. Cancellation only matters when |mean| >> std, which projected
    # tokens are not; the clamp keeps the result non-negative regardless.
    mean_sq = torch.linalg.vector_norm(x, dim=-1).pow(2) / x.shape[-1]
    return (mean_sq - x.mean(dim=-1).pow(2)).clamp_min(0.0)


@torch.no_grad()
def standardize(x: Tensor) -> Tensor:
    """Zero mean, unit std along the last dim (per image); a constant row maps to zeros."""
    x = x.detach().float()
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    centred = x - mean
    # Guard std=0 (flat image / single token): every token is equally good -> all zeros.
    return torch.where(std > _EPS, centred / std.clamp_min(_EPS), torch.zeros_like(centred))


@torch.no_grad()
def relevance_score(tokens: Tensor, text_embeds: Tensor | None = None, alpha: float = 0.7) -> Tensor:
    """``alpha * z(text_relevance) + (1 - alpha) * z(saliency)``; saliency alone without a question."""
    sal = standardize(saliency(tokens))
    if text_embeds is None or text_embeds.shape[1] == 0:
        return sal
    return alpha * standardize(text_relevance(tokens, text_embeds)) + (1.0 - alpha) * sal


@torch.no_grad()
def centre_distance(grid_hw: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
    """``[H*W]``: Euclidean distance of each cell from the grid centre, divided by the largest one (0..1)."""
    h, w = grid_hw
    rows = torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2
    cols = torch.arange(w, device=device, dtype=torch.float32) - (w - 1) / 2
    d = (rows[:, None] ** 2 + cols[None, :] ** 2).sqrt().reshape(-1)
    return d / d.max().clamp_min(_EPS)
