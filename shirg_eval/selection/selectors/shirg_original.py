"""``shirg_original`` ("SHIRG-X"): adaptive K, SHIRG-X score, one-hop neighbour merging *before* selection,
and the avg-pooled scaffold -- the method as the public SHIRG-X prototype runs it, with the differences below.

Per image (grid ``H x W``, N = H*W tokens):

1. **Gate.** ``gate_value = mean_i ||x_i - x_mean||^2 / mean_i ||x_i||^2`` over the image's tokens: the spread
   of the tokens across the grid divided by their mean squared norm, in [0, 1] and scale invariant (0 for a
   flat image, towards 1 when tokens share nothing). K is ``k_choices[i]`` where ``i`` is the number of
   ``gate_thresholds`` the value reaches; defaults ``< 0.35 -> 512``, ``[0.35, 0.6) -> 768``, ``>= 0.6 -> 1024``.
   **The thresholds are not fitted**: they are a prior chosen here, exposed as parameters so a sweep can
   calibrate them on real LaViDa features.
2. **Score.** ``0.7 * z(sim) - 0.2 * z(var) - 0.1 * z(dist)``: sim = max-over-question-tokens cosine relevance
   (without a question, the token's L2 norm, as the prototype's fallback), var = the token's variance across
   channels (the prototype's "neighbour distance" proxy), dist = distance from the grid centre.
3. **Merge, one hop, before selection** (``merge="one_hop"``, the default). Positions are visited in raster
   order; a position not yet absorbed seeds a unit and absorbs each of its 4-neighbours (right, down, left,
   up) that is not yet absorbed and whose score differs from the seed's by less than ``merge_threshold``.
   Absorbed positions are not expanded further (one hop, no transitive chains). In raster order the left and
   upper neighbours are always taken already, so a unit holds at most 3 positions and N/3 <= units <= N.
   A unit's feature is the mean of its members (``merge_features="mean"``) or the seed's own feature
   (``"seed"``, what the prototype's code emits); its score is the seed's score.
4. **Select** the K best units (stable: ties go to the lower seed index), emitted in the raster order of
   their seeds. ``kept_indices`` lists every grid position the selected units cover (ascending).
5. Append the ``region x region`` avg-pooled scaffold (144 tokens for 48x48).

So the LM sees ``min(K, units) + scaffold`` tokens: exactly K + 144 on a 48x48 grid (units >= 768 there).

Where this still deviates from the prototype (``rkawamura0483/LaViDa_mod``, ``shirg_x_selection`` /
``merge_neighboring_tokens`` / ``compute_adaptive_k_budget``, July 2025):

* Gate: the prototype predicts K with a 2-layer MLP on patch entropy that is never trained in the public code;
  its fallback min-max normalises the entropy across the *batch*, so a batch of one always gets the smallest
  K. Here: the fixed-threshold rule of step 1 (thresholds not fitted).
* Score scale: the prototype adds raw terms (dot-product similarity, channel variance, centre distance in
  normalised coordinates) whose scales differ by orders of magnitude, and applies ``epsilon = 0.05`` to that
  raw sum. Here each term is z-scored per image first, so ``merge_threshold`` is in standard deviations.
  Text relevance is cosine (the prototype: raw dot product).
* Merge: the prototype keeps the seed's features and gives the unit an area-weighted centroid for its
  coordinate embedding; the coordinate embedding is not implemented here (no trained ``coord_linear``), and
  the default ``merge_features="mean"`` averages the members (``"seed"`` reproduces the prototype).
  The SHIRG-X design notes say only *low-score* neighbours merge; the prototype's code has no such test and
  merges similar-score neighbours at any score, which is what runs here. (Restricting the merge to tokens that
  top-K would drop anyway could not change which tokens are selected.)
* Selection: the prototype takes its top-K indices from the *pre-merge* score vector and gathers them from
  the shorter merged list (an index mismatch); here units are ranked by their own (seed) score.
* Features: selection runs on projected tokens (after ``mm_projector``), the prototype on SigLIP features.

``merge="kept_components"`` keeps this project's earlier variant as an option (off by default): plain top-K
first, then kept 4-neighbours with scores closer than ``merge_threshold`` are linked transitively and each
connected component becomes one token (the mean of its members), so fewer than K tokens reach the LM.
``merge="none"`` disables merging.
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
from ..reduce_ops import group_means
from ..registry import register_selector
from ..scoring import centre_distance, saliency, standardize, text_relevance

# Score weights (fixed by the method, not tunable).
SIM_WEIGHT = 0.7
VAR_WEIGHT = -0.2
DIST_WEIGHT = -0.1

DEFAULT_K_CHOICES: tuple[int, ...] = (512, 768, 1024)
# Gate thresholds on the spatial-diversity ratio (0..1). A prior, NOT fitted to any data.
DEFAULT_GATE_THRESHOLDS: tuple[float, ...] = (0.35, 0.6)
MERGE_MODES = ("one_hop", "kept_components", "none")
MERGE_FEATURES = ("mean", "seed")


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


def one_hop_units(scores: Sequence[float], grid_hw: tuple[int, int], threshold: float) -> list[int]:
    """Unit id per grid position (raster order), units numbered in the raster order of their seeds.

    The prototype's scan (module docstring, step 3): a sequential pass, since whether a position is still
    free depends on the units seeded before it. Plain Python floats: ~1 ms for 48x48.
    """
    h, w = grid_hw
    unit = [-1] * (h * w)
    n_units = 0
    for p in range(h * w):
        if unit[p] >= 0:
            continue
        unit[p] = n_units
        r, c = divmod(p, w)
        # right, down, left, up (left/up are always taken already in raster order; kept for the record)
        for q, ok in ((p + 1, c + 1 < w), (p + w, r + 1 < h), (p - 1, c > 0), (p - w, r > 0)):
            if ok and unit[q] < 0 and abs(scores[p] - scores[q]) < threshold:
                unit[q] = n_units
        n_units += 1
    return unit


@torch.no_grad()
def merge_groups(kept: Tensor, scores: Tensor, grid_hw: tuple[int, int], threshold: float) -> Tensor:
    """``merge="kept_components"``: group id ``[K]`` per kept index (ascending), numbered by smallest index.

    Connected components of the graph whose nodes are kept positions and whose edges join kept
    4-neighbours with ``|score_a - score_b| < threshold`` (min-label propagation with pointer jumping).
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
    return torch.unique(label, sorted=True, return_inverse=True)[1]


@register_selector("shirg_original")
class ShirgOriginalSelector(Selector):
    def __init__(
        self,
        scaffold: bool | int = True,
        merge: str = "one_hop",
        merge_threshold: float = 0.05,
        merge_features: str = "mean",
        k_choices: Sequence[int] = DEFAULT_K_CHOICES,
        gate_thresholds: Sequence[float] = DEFAULT_GATE_THRESHOLDS,
        region: int = 4,
    ) -> None:
        self.scaffold = check_scaffold(scaffold)
        if merge not in MERGE_MODES:
            raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
        if merge_features not in MERGE_FEATURES:
            raise ValueError(f"merge_features must be one of {MERGE_FEATURES}, got {merge_features!r}")
        self.merge, self.merge_features = merge, merge_features
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
            merge=self.merge,
            merge_threshold=self.merge_threshold,
            merge_features=self.merge_features,
            k_choices=list(self.k_choices),
            gate_thresholds=list(self.gate_thresholds),
            region=self.region,
        )

    @torch.no_grad()
    def scores(self, tokens: Tensor, grid_hw: tuple[int, int], text_embeddings: Tensor | None) -> Tensor:
        """``[B, N]`` SHIRG-X score (float32, no grad)."""
        z_var = standardize(saliency(tokens))
        if text_embeddings is None or text_embeddings.shape[1] == 0:
            z_sim = standardize(torch.linalg.vector_norm(tokens.detach().float(), dim=-1))
        else:
            z_sim = standardize(text_relevance(tokens, text_embeddings))
        z_dist = standardize(centre_distance(grid_hw, tokens.device))[None, :]
        return SIM_WEIGHT * z_sim + VAR_WEIGHT * z_var + DIST_WEIGHT * z_dist

    def _one_hop(self, x: Tensor, scores: Tensor, grid: tuple[int, int], k: int) -> tuple[Tensor, Tensor, int, int]:
        """(tokens [k', D], kept positions, k', number of units) for one image."""
        n = grid[0] * grid[1]
        if self.merge == "none" or self.merge_threshold == 0.0:
            unit = torch.arange(n, device=x.device)
        else:
            unit = torch.tensor(one_hop_units(scores.tolist(), grid, self.merge_threshold), device=x.device)
        n_units = int(unit.max()) + 1
        seeds = torch.full((n_units,), n, dtype=torch.long, device=x.device)
        seeds = seeds.scatter_reduce(0, unit, torch.arange(n, device=x.device), reduce="amin")
        k = min(k, n_units)
        # best k units by their seed's score; stable sort, and seeds ascend with unit id, so ties go to the
        # lower raster index. Ascending unit id = the raster order of the seeds.
        unit_scores = torch.nan_to_num(scores[seeds], nan=-torch.inf)
        chosen = torch.sort(unit_scores, descending=True, stable=True).indices[:k].sort().values
        if n_units == n:  # nothing merged: a plain gather
            return x.index_select(0, seeds[chosen]), seeds[chosen], k, n_units
        picked = torch.zeros(n_units, dtype=torch.bool, device=x.device)
        picked[chosen] = True
        kept = picked[unit].nonzero().flatten()  # every position a chosen unit covers, ascending
        if self.merge_features == "seed":
            return x.index_select(0, seeds[chosen]), kept, k, n_units
        rank = torch.full((n_units,), -1, dtype=torch.long, device=x.device)
        rank[chosen] = torch.arange(k, device=x.device)
        return group_means(x.index_select(0, kept), rank[unit[kept]], k), kept, k, n_units

    def _kept_components(self, x: Tensor, scores: Tensor, grid: tuple[int, int], k: int) -> tuple[Tensor, Tensor, int]:
        kept = coverage_topk(scores, grid, k, self.region, coverage=False)
        group = merge_groups(kept, scores, grid, self.merge_threshold)
        g = int(group.max()) + 1 if k else 0
        sel = x.index_select(0, kept)
        return (sel if g == k else group_means(sel, group, g)), kept, g

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
        out, kept_all, ks, merged_away = [], [], [], []
        for b in range(tokens.shape[0]):
            k = min(choose_k(gates[b], self.k_choices, self.gate_thresholds), n)
            if self.merge == "kept_components":
                sel, kept, g = self._kept_components(tokens[b], scores[b], grid, k)
                merged_away.append(k - g)
            else:
                sel, kept, k, n_units = self._one_hop(tokens[b], scores[b], grid, k)
                merged_away.append(n - n_units)
            out.append(sel if scaffold is None else torch.cat([sel, scaffold[b]], dim=0))
            kept_all.append(kept)
            ks.append(k)
        info = {
            "selector": self.name,
            "k": ks,
            "gate_value": [round(float(v), 6) for v in gates],
            "merge": self.merge,
            "n_merged_away": merged_away,  # one_hop: grid positions absorbed before selection
            "n_kept_positions": [int(k.numel()) for k in kept_all],
            "n_scaffold": 0 if scaffold is None else int(scaffold.shape[1]),
            "n_tokens": [int(t.shape[0]) for t in out],
            "merge_threshold": self.merge_threshold,
            "weights": {"sim": SIM_WEIGHT, "var": VAR_WEIGHT, "dist": DIST_WEIGHT},
            "text_conditioned": text_embeds is not None and text_embeds.shape[1] > 0,
        }
        return SelectionResult(tokens=out, kept_indices=kept_all, info=info)
