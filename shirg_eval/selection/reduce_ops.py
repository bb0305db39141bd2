"""Small operations the field's reducers share: ranking, cosine similarity, assignment and group means.

Ranking and assignment are discrete choices computed without gradients; :func:`group_means` is an ``index_add``
over the input tokens, so every merged token stays differentiable with respect to each token it merged.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["complement", "group_means", "nearest", "normalized", "top_k_raster"]

_EPS = 1e-6


@torch.no_grad()
def top_k_raster(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` best scores, ascending; ties go to the lower index, NaN counts as the worst."""
    scores = torch.nan_to_num(scores.detach().float(), nan=-torch.inf)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k].sort().values


def complement(indices: Tensor, n: int) -> Tensor:
    """The ascending indices of ``range(n)`` not in ``indices``."""
    keep = torch.ones(n, dtype=torch.bool, device=indices.device)
    keep[indices] = False
    return keep.nonzero().flatten()


@torch.no_grad()
def normalized(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (float32, detached); a zero row stays zero."""
    x = x.detach().float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


@torch.no_grad()
def nearest(queries: Tensor, targets: Tensor) -> Tensor:
    """``[M]``: for each query row the index of the target row with the highest cosine similarity."""
    return (normalized(queries) @ normalized(targets).T).argmax(dim=-1)


def group_means(x: Tensor, group: Tensor, n_groups: int, weights: Tensor | None = None) -> Tensor:
    """``[G, D]``: the (weighted) mean of the rows of ``x`` in each group; differentiable in ``x``.

    ``group[i]`` is row ``i``'s group id in ``[0, n_groups)``; every group must have at least one member.
    """
    if weights is None:
        weights = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    w = weights.detach().to(x.dtype)
    summed = x.new_zeros(n_groups, x.shape[-1]).index_add(0, group, x * w[:, None])
    total = x.new_zeros(n_groups).index_add(0, group, w)
    return summed / total[:, None]
