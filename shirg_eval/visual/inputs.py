"""A selector's inputs for one image: tokens in the space it declared, its grid, and the context it asked for.

The vision tower runs once; the probe (attention / keys at one or two layers) is attached only when the selector
declares it, and the projector runs on every token only when the selector works on projected tokens (selectors that
declare ``features`` get pre-projector features, and the visual path projects just what they return).

Input paths: one square view (``grid = side x side``), or LaViDa's anyres views (selectors that declare
``multi_view``). Anyres tokens are put in the order LaViDa feeds them to the LM -- the whole-image view's
``side x side`` tokens, then the tile map (tiles placed as in the image, ``rows*side x cols*side``) in raster
order, before unpadding and newlines -- and the grid handed to the selector is ``(n_views * side, side)``: a token
count in that order, whose rows are not image rows past the first view. :class:`~shirg_eval.selection.context.ViewLayout` says which
view each token comes from.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..model.preprocess import ImageViews, fitted_size
from ..model.sampler import StageTimer, mark
from ..model.tower_probe import TowerProbe
from ..selection.context import SelectionContext, SelectorNeeds, ViewLayout

if TYPE_CHECKING:
    from ..model.lavida import LavidaModel


@dataclass
class SelectorInputs:
    tokens: Tensor  # [1, N, D]: pre-projector features or projected tokens, as the selector declared
    grid_hw: tuple[int, int]
    context: SelectionContext | None
    in_feature_space: bool


def anyres_order(side: int, grid_wh: tuple[int, int]) -> Tensor:
    """``[V * side^2]``: for each position in LaViDa's order, its index in the view-major ``[V, side^2]`` stack."""
    cols, rows = grid_wh
    y = torch.arange(rows * side)[:, None]
    x = torch.arange(cols * side)[None, :]
    tile = (y // side) * cols + x // side
    stacked = (1 + tile) * side * side + (y % side) * side + x % side
    return torch.cat([torch.arange(side * side), stacked.reshape(-1)])


def anyres_layout(views: ImageViews, side: int, tile_px: int) -> ViewLayout:
    """The :class:`ViewLayout` of LaViDa's anyres order, with each global-view position mapped to its tile."""
    cols, rows = views.grid_wh
    order = anyres_order(side, (cols, rows))
    view_of = order // (side * side)
    # The global view is the whole image stretched to a square; the tiles cut the image fitted into the
    # (cols x rows) canvas and centred. Map each global position's centre through that fit.
    canvas_w, canvas_h = cols * tile_px, rows * tile_px
    new_w, new_h = fitted_size(views.image_size, (canvas_w, canvas_h))
    centres = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    px = (canvas_w - new_w) // 2 + centres * new_w
    py = (canvas_h - new_h) // 2 + centres * new_h
    col = (px // tile_px).clamp(0, cols - 1).long()
    row = (py // tile_px).clamp(0, rows - 1).long()
    global_to_view = (1 + row[:, None] * cols + col[None, :]).reshape(-1)
    return ViewLayout(rows * cols + 1, view_of, side, (cols, rows), global_to_view)


def selector_inputs(model: LavidaModel, views: ImageViews, needs: SelectorNeeds, anyres: bool = False,
                    timer: StageTimer | None = None) -> SelectorInputs:
    """Run the tower (with the probe the selector declared) and arrange what the selector gets.

    ``timer`` (optional) closes the ``vision`` and ``projector`` stages."""
    pixels = views.pixel_values
    n_views = int(pixels.shape[0])
    if anyres != (views.grid_wh is not None and n_views > 1):
        raise ValueError("anyres inputs need the anyres views (VisualPath.prepare with anyres=True)")
    if n_views > 1 and not anyres:
        raise ValueError(f"got {n_views} views for a single-view selector input")
    probe = TowerProbe(model.vision_tower, needs.attention_layers, needs.keys) if needs.tower_probe else None
    with probe if probe is not None else nullcontext():
        features = model.encode_views(pixels)  # [V, side^2, C]
    mark(timer, "vision")
    side = math.isqrt(features.shape[1])
    tokens = features if needs.features else model.project(features)
    mark(timer, "projector")
    device = tokens.device
    if anyres:
        order = anyres_order(side, views.grid_wh).to(device)
        layout = anyres_layout(views, side, model.config.vision.image_size)
        layout = ViewLayout(layout.n_views, layout.view_of.to(device), side, layout.tile_grid,
                            layout.global_to_view.to(device))
    else:
        order = None
        layout = ViewLayout.single(side * side, device)

    def arrange(x: Tensor) -> Tensor:  # [V, side^2, ...] -> [1, N, ...] in LaViDa's order
        flat = x.reshape(1, n_views * side * side, *x.shape[2:])
        return flat if order is None else flat[:, order]

    context = None
    if needs.uses_context:
        context = SelectionContext(layout=layout, n_heads=probe.n_heads if probe else 1)
        if probe is not None:
            context.attention = {layer: arrange(a) for layer, a in probe.attention().items()}
            context.keys = arrange(probe.keys()) if needs.keys else None
    return SelectorInputs(arrange(tokens), (n_views * side, side), context, needs.features)
