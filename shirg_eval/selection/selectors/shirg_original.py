"""``shirg_original`` ("SHIRG-X"): adaptive-K selection with centre bias, similar-neighbour merging
and the avg-pooled scaffold.

Per image:

1. Gate. ``gate_value = mean_i ||x_i - x_mean||^2 / mean_i ||x_i||^2`` over the image's tokens, i.e. the
   mean per-channel variance of the tokens across the grid divided by their mean squared norm. It lies in
   [0, 1] and is scale invariant: 0 for a flat image (every token alike), towards 1 when tokens share
   nothing. (The per-token channel variance normalised the same way is ~1 for any centred projector
   output, so it cannot separate images; the spread across positions can.) K is ``k_choices[i]`` where
   ``i`` is the number of ``gate_thresholds`` the gate value reaches: with the defaults
   ``< 0.35 -> 512``, ``[0.35, 0.6) -> 768``, ``>= 0.6 -> 1024``. The thresholds are a prior, not a fit:
   they are parameters so a sweep can calibrate them on real LaViDa features. K is clamped to H*W.
2. Score. ``0.7 * z(sim) - 0.2 * z(var) - 0.1 * z(dist)`` with sim = text relevance (z(saliency) when
   there is no question), var = saliency, dist = normalised distance from the grid centre.
3. Plain top-K, raster order.
4. Merge. Kept 4-neighbours whose scores differ by less than ``merge_threshold`` are linked; each
   connected component becomes one token, the mean of its members' features, emitted at the position of
   its smallest raster index. ``kept_indices`` still lists every kept grid index.
5. Append the ``region x region`` avg-pooled scaffold (144 tokens for 48x48).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..base import (
    SelectionResult,
    Selector,
    check_float,
    check_int,
    check_scaffold,
    coverage_topk,
    scaffold_tokens,
)
from ..registry import register_selector
from ..scoring import centre_distance, saliency, standardize, text_relevance

# Score weights (fixed by the method, not tunable).
SIM_WEIGHT = 0.7
VAR_WEIGHT = -0.2
DIST_WEIGHT = -0.1

DEFAULT_K_CHOICES: tuple[int, ...] = (512, 768, 1024)
# Gate thresholds on the scale-invariant spatial-diversity ratio described above (0..1): flat, mostly
# uniform images (< 0.35) get the small budget, busy documents/charts (>= 0.6) the large one.
DEFAULT_GATE_THRESHOLDS: tuple[float, ...] = (0.35, 0.6)


@torch.no_grad()
def gate_values(tokens: Tensor) -> Tensor:
    """``[B]`` spatial-diversity ratio in [0, 1] (see module docstring)."""
    x = tokens.detach().float()
    # mean_i ||x_i - xbar||^2 = mean_i ||x_i||^2 - ||xbar||^2: no [B, N, D] temporaries.
    energy = torch.linalg.vector_norm(x, dim=-1).pow(2).mean(-1)
    spread = (energy - torch.linalg.vector_norm(x.mean(dim=1), dim=-1).pow(2)).clamp_min(0.0)
    ratio = spread / energy.clamp_min(1e-12)
    return torch.where(energy > 0, ratio.clamp(0.0, 1.0), torch.zeros_like(energy))


def choose_k(gate_value: float, k_choices: Sequence[int], thresholds: Sequence[float]) -> int:
    return int(k_choices[sum(gate_value >= t for t in thresholds)])


@torch.no_grad()
def merge_groups(kept: Tensor, scores: Tensor, grid_hw: tuple[int, int], threshold: float) -> Tensor:
    """Group id ``[K]`` for each kept index (ascending), groups numbered by their smallest raster index.

    Connected components of the graph whose nodes are kept positions and whose edges join kept
    4-neighbours with ``|score_a - score_b| < threshold``. Min-label propagation with pointer jumping:
    vectorised, and the fixed point labels every component with its smallest member.
    """
    h, w = grid_hw
    n, k = h * w, kept.shape[0]
    dev = kept.device
    local = torch.full((n,), -1, dtype=torch.long, device=dev)
    local[kept] = torch.arange(k, device=dev)
    ids = torch.arange(n, device=dev).view(h, w)
    a = torch.cat([ids[:, :-1].reshape(-1), ids[:-1, :].reshape(-1)])
    b = torch.cat([ids[:, 1:].reshape(-1), ids[1:, :].reshape(-1)])
    ok = (local[a] >= 0) & (local[b] >= 0) & ((scores[a] - scores[b]).abs() < threshold)
    ea, eb = local[a[ok]], local[b[ok]]
    label = torch.arange(k, device=dev)
    if ea.numel():
        while True:
            m = torch.minimum(label[ea], label[eb])
            new = label.scatter_reduce(0, ea, m, reduce="amin").scatter_reduce(0, eb, m, reduce="amin")
            new = new[new]
            if torch.equal(new, label):
                break
            label = new
    # kept is ascending, so local ids order like raster ids and unique() numbers groups in raster order.
    return torch.unique(label, sorted=True, return_inverse=True)[1]


@register_selector("shirg_original")
class ShirgOriginalSelector(Selector):
    def __init__(
        self,
        scaffold: bool | int = True,
        merge_threshold: float = 0.05,
        k_choices: Sequence[int] = DEFAULT_K_CHOICES,
        gate_thresholds: Sequence[float] = DEFAULT_GATE_THRESHOLDS,
        region: int = 4,
    ) -> None:
        self.scaffold = check_scaffold(scaffold)
        self.merge_threshold = check_float("merge_threshold", merge_threshold, 0.0, None)
        if isinstance(k_choices, (str, bytes)) or not isinstance(k_choices, Sequence) or not k_choices:
            raise ValueError(f"k_choices must be a non-empty sequence of ints, got {k_choices!r}")
        self.k_choices = tuple(check_int("k_choices", k) for k in k_choices)
        if list(self.k_choices) != sorted(set(self.k_choices)):
            raise ValueError(f"k_choices must be strictly increasing, got {self.k_choices}")
        if isinstance(gate_thresholds, (str, bytes)) or not isinstance(gate_thresholds, Sequence):
            raise ValueError(f"gate_thresholds must be a sequence of numbers, got {gate_thresholds!r}")
        self.gate_thresholds = tuple(check_float("gate_thresholds", t) for t in gate_thresholds)
        if len(self.gate_thresholds) != len(self.k_choices) - 1:
            raise ValueError(
                f"gate_thresholds needs len(k_choices) - 1 = {len(self.k_choices) - 1} values, "
                f"got {len(self.gate_thresholds)}"
            )
        if list(self.gate_thresholds) != sorted(self.gate_thresholds):
            raise ValueError(f"gate_thresholds must be non-decreasing, got {self.gate_thresholds}")
        self.region = check_int("region", region)
        super().__init__(
            scaffold=self.scaffold,
            merge_threshold=self.merge_threshold,
            k_choices=list(self.k_choices),
            gate_thresholds=list(self.gate_thresholds),
            region=self.region,
        )

    @torch.no_grad()
    def scores(self, tokens: Tensor, grid_hw: tuple[int, int], text_embeds: Tensor | None) -> Tensor:
        """``[B, N]`` SHIRG-X score (float32, no grad)."""
        z_var = standardize(saliency(tokens))
        if text_embeds is None or text_embeds.shape[1] == 0:
            z_sim = z_var
        else:
            z_sim = standardize(text_relevance(tokens, text_embeds))
        z_dist = standardize(centre_distance(grid_hw, tokens.device))[None, :]
        return SIM_WEIGHT * z_sim + VAR_WEIGHT * z_var + DIST_WEIGHT * z_dist

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        grid = self.check_inputs(tokens, grid_hw, text_embeds)
        n = grid[0] * grid[1]
        scores = self.scores(tokens, grid, text_embeds)
        gates = gate_values(tokens).tolist()
        scaffold = scaffold_tokens(tokens, grid, self.region) if self.scaffold else None
        out, kept_all, ks, n_groups = [], [], [], []
        for b in range(tokens.shape[0]):
            k = min(choose_k(gates[b], self.k_choices, self.gate_thresholds), n)
            # plain top-K (stable: ties go to the lower raster index), ascending raster order
            kept = coverage_topk(scores[b], grid, k, self.region, coverage=False)
            group = merge_groups(kept, scores[b], grid, self.merge_threshold)
            g = int(group.max()) + 1 if k else 0
            sel = tokens[b].index_select(0, kept)
            # Group means via index_add: differentiable w.r.t. every member token.
            if g == k:
                merged = sel  # nothing merged: skip two full-size passes
            else:
                summed = sel.new_zeros(g, sel.shape[1]).index_add(0, group, sel)
                counts = torch.bincount(group, minlength=g).to(sel.dtype)
                merged = summed / counts[:, None]
            out.append(merged if scaffold is None else torch.cat([merged, scaffold[b]], dim=0))
            kept_all.append(kept)
            ks.append(k)
            n_groups.append(g)
        info = {
            "selector": self.name,
            "k": ks,
            "gate_value": [round(float(v), 6) for v in gates],
            "n_groups": n_groups,
            "n_merged_away": [k - g for k, g in zip(ks, n_groups, strict=True)],
            "n_scaffold": 0 if scaffold is None else int(scaffold.shape[1]),
            "n_tokens": [int(t.shape[0]) for t in out],
            "merge_threshold": self.merge_threshold,
            "weights": {"sim": SIM_WEIGHT, "var": VAR_WEIGHT, "dist": DIST_WEIGHT},
            "text_conditioned": text_embeds is not None and text_embeds.shape[1] > 0,
        }
        return SelectionResult(tokens=out, kept_indices=kept_all, info=info)
