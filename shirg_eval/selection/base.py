"""Selector base class, the result type, and index helpers shared by several selectors.

A selector turns the projected visual tokens of one high-resolution view (``[B, H*W, D]``, raster
order over an ``H x W`` grid) into the sequence that is spliced into the prompt. Selection itself is
discrete (scores are computed without gradients), but the emitted tokens are gathered / averaged from
the input with differentiable ops, so LoRA training sees gradients on the kept tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .context import SelectionContext, SelectorNeeds

# Visual tokens the LM receives when a budgeted selector is not told otherwise (every preset and selector default).
DEFAULT_K = 768

__all__ = [
    "DEFAULT_K",
    "SelectionResult",
    "Selector",
    "check_bool",
    "check_budget",
    "check_float",
    "check_int",
    "check_scaffold",
    "coverage_topk",
    "n_regions",
    "region_ids",
    "scaffold_tokens",
]


@dataclass
class SelectionResult:
    """What a selector hands to the model.

    ``tokens[b]`` is ``[T_b, D]``: the selected tokens in ascending raster order, then scaffold tokens
    (if any). ``kept_indices[b]`` is a LongTensor ``[K_b]`` of ascending raster indices into the H*W grid
    (for pictures and bookkeeping). ``info`` holds JSON-able facts; quantities that can differ between
    images of a batch are lists of length B, constants are scalars.
    """

    tokens: list[Tensor]
    kept_indices: list[Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> list[int]:
        return [int(t.shape[0]) for t in self.tokens]


class Selector:
    """Base class; subclasses register with ``@register_selector(name)`` which sets ``name``.

    ``needs`` declares what the selector wants beyond projected tokens (see :mod:`.context`); a selector that
    declares anything receives ``context=`` in :meth:`select`, the others are called exactly as before.
    """

    name: str = "base"
    needs: ClassVar[SelectorNeeds] = SelectorNeeds()

    def __init__(self, **params: Any) -> None:
        # Subclasses validate their own parameters and pass the cleaned values here so that
        # ``self.params`` is a faithful, JSON-able record of the configuration.
        self.params: dict[str, Any] = dict(params)

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SelectionResult:
        raise NotImplementedError

    def __call__(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
        context: SelectionContext | None = None,
    ) -> SelectionResult:
        if not self.needs.uses_context:
            return self.select(tokens, grid_hw, text_embeds=text_embeds, generator=generator)
        return self.select(tokens, grid_hw, text_embeds=text_embeds, generator=generator, context=context)

    def needs_for(self, multi_view: bool) -> SelectorNeeds:
        """What to compute for this input path (a selector may need less on a single view than on anyres)."""
        return self.needs

    def require_context(self, context: SelectionContext | None, tokens: Tensor) -> SelectionContext:
        """The context, or a clear error when the selector is called without the inputs it declared."""
        if context is None:
            raise ValueError(
                f"selector {self.name!r} needs {self.needs}; run it through VisualPath (which computes them) or "
                "pass context=SelectionContext(...)"
            )
        if context.layout.view_of.shape[0] != tokens.shape[1]:
            raise ValueError(
                f"context layout covers {context.layout.view_of.shape[0]} tokens but tokens has {tokens.shape[1]}"
            )
        return context

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}<{self.name}>({args})"

    # -- input checking -------------------------------------------------------------------------
    @staticmethod
    def check_inputs(
        tokens: Tensor, grid_hw: tuple[int, int], text_embeds: Tensor | None = None
    ) -> tuple[int, int]:
        """Validate shapes against the contract; returns ``(H, W)`` as ints."""
        if len(grid_hw) != 2:
            raise ValueError(f"grid_hw must be (H, W), got {grid_hw!r}")
        h, w = int(grid_hw[0]), int(grid_hw[1])
        if h < 1 or w < 1:
            raise ValueError(f"grid_hw must be positive, got {grid_hw!r}")
        if tokens.dim() != 3:
            raise ValueError(f"tokens must be [B, H*W, D], got shape {tuple(tokens.shape)}")
        if tokens.shape[1] != h * w:
            raise ValueError(f"tokens has {tokens.shape[1]} positions but grid_hw={h}x{w} needs {h * w}")
        if text_embeds is not None:
            if text_embeds.dim() != 3:
                raise ValueError(f"text_embeds must be [B, T, D], got shape {tuple(text_embeds.shape)}")
            if text_embeds.shape[0] != tokens.shape[0] or text_embeds.shape[2] != tokens.shape[2]:
                raise ValueError(
                    f"text_embeds {tuple(text_embeds.shape)} does not match tokens {tuple(tokens.shape)} "
                    "in batch size or width"
                )
        return h, w


# -- parameter validation ------------------------------------------------------------------------
def check_int(name: str, value: Any, minimum: int = 1) -> int:
    # bool is an int subclass; k=True is almost certainly a bug, so reject it.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_budget(k: int, n: int, who: str) -> None:
    """``k`` LM-side tokens out of ``n`` candidates: a clear error when it cannot be met exactly."""
    if k > n:
        raise ValueError(f"{who}: k={k} exceeds the number of visual tokens ({n}); choose k <= {n}")


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_scaffold(value: Any) -> bool:
    """``scaffold`` may be a bool or the count 0/1 (configs written as integers)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"scaffold must be a bool or 0/1, got {value!r}")


# -- grid / region helpers -----------------------------------------------------------------------
def n_regions(grid_hw: tuple[int, int], region: int) -> int:
    h, w = grid_hw
    return math.ceil(h / region) * math.ceil(w / region)


def region_ids(grid_hw: tuple[int, int], region: int, device: torch.device | str = "cpu") -> Tensor:
    """LongTensor ``[H*W]``: raster id of the ``region x region`` cell each grid position falls in.

    Cells are numbered in raster order over the ``ceil(H/r) x ceil(W/r)`` cell grid (border cells may be
    partial), matching the order of the avg-pooled scaffold.
    """
    h, w = grid_hw
    rows = torch.arange(h, device=device) // region
    cols = torch.arange(w, device=device) // region
    return (rows[:, None] * math.ceil(w / region) + cols[None, :]).reshape(-1)


def coverage_topk(
    scores: Tensor, grid_hw: tuple[int, int], k: int, region: int, coverage: bool = True
) -> Tensor:
    """Indices of ``k`` distinct positions, ascending raster order.

    With ``coverage`` the best-scoring position of every region is taken first, then the remaining
    ``k - n_regions`` slots go to the globally best of the rest; without it, plain top-k. Ties break
    towards the lower raster index (stable sort), so the result is deterministic.
    """
    n = scores.shape[0]
    h, w = grid_hw
    if k > n:
        raise ValueError(f"k={k} exceeds the number of grid tokens {h}x{w}={n}")
    # NaNs would make the ordering ill-defined; treat them as the worst score.
    scores = torch.nan_to_num(scores.detach().float(), nan=-math.inf)
    order = torch.sort(scores, descending=True, stable=True).indices
    if not coverage:
        return order[:k].sort().values
    nreg = n_regions(grid_hw, region)
    if k < nreg:
        raise ValueError(
            f"k={k} is smaller than the number of {region}x{region} regions ({nreg}) of the {h}x{w} grid; "
            f"with coverage on, k must be in [{nreg}, {n}]"
        )
    rid = region_ids(grid_hw, region, scores.device)
    # First occurrence of each region in score order = that region's best token.
    rank = torch.arange(n, device=scores.device)
    first = torch.full((nreg,), n, dtype=torch.long, device=scores.device)
    first = first.scatter_reduce(0, rid[order], rank, reduce="amin")
    winners = order[first]
    taken = torch.zeros(n, dtype=torch.bool, device=scores.device)
    taken[winners] = True
    rest = order[~taken[order]][: k - nreg]
    return torch.cat([winners, rest]).sort().values


def scaffold_tokens(tokens: Tensor, grid_hw: tuple[int, int], region: int) -> Tensor:
    """``[B, ceil(H/r)*ceil(W/r), D]`` region averages in raster order (differentiable).

    Numerically this is ``F.avg_pool2d(grid, region, region, ceil_mode=True)`` on the ``[B, D, H, W]``
    view (partial border cells averaged over their real positions; the tests check the equality), but
    computed as an ``index_add`` over region ids: the token tensor is channels-last in memory and
    avg_pool2d on that layout is ~20x slower on CPU (~50 ms vs ~2 ms for 48x48x4096).
    """
    b, n, d = tokens.shape
    rid = region_ids(grid_hw, region, tokens.device)
    nreg = n_regions(grid_hw, region)
    summed = tokens.new_zeros(b, nreg, d).index_add(1, rid, tokens)
    counts = torch.bincount(rid, minlength=nreg).to(tokens.dtype)
    return summed / counts[None, :, None]
