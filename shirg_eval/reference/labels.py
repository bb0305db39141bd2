"""Where the renderer's glyphs land in LaViDa's visual block: ground-truth labels for every visual position.

The renderer knows every character's cell and every cued region in image pixels. Each view of the release path
(anyres: view 0 is the whole image stretched to 384 px, then the 384 px tiles of the image fitted into the best
pinpoint; ``pad``: the image centred on a square) covers a known window of the image, its tower sees the first
27 x 14 = 378 px of it, and 2x2 pooling (bilinear, 27 -> 14) makes each visual position one 27 px cell of the view.
So a position's labels are :func:`~.dense.patch_labels` on a 14 x 14 grid over the view's window, laid out exactly
as the embeddings are (:meth:`LavidaModel.layout_block`: unpadded tile map with newlines).

These labels are exact where the stage-1 heads' predictions, pooled, agreed with the asked answer on only 23 % of
release-path questions (measured on a trained tower): labels from a model cannot teach a model to read.
"""

from __future__ import annotations

import dataclasses

import torch

from ..data.reading import Printed, ReadingItem
from ..model.lavida import LavidaModel
from ..model.preprocess import ImageViews, fitted_size
from .dense import BACKGROUND, IGNORE, PATCH, patch_labels

POOLED = 14  # visual positions per view side after LaViDa's 2x2 pooling of 27 x 27 patches


def view_windows(views: ImageViews, view_px: int = 384) -> list[tuple[float, float, float, float]]:
    """The image window (x0, y0, x1, y1) each view's tower sees: anyres (``grid_wh`` set) or one padded view."""
    width, height = views.image_size
    seen = (view_px // PATCH) * PATCH / view_px  # the tower's patches cover 378 of 384 px
    if views.grid_wh is None:
        side = max(width, height)
        x0, y0 = -((side - width) // 2), -((side - height) // 2)
        return [(x0, y0, x0 + side * seen, y0 + side * seen)]
    cols, rows = views.grid_wh
    new_w, new_h = fitted_size((width, height), (cols * view_px, rows * view_px))
    off_x, off_y = (cols * view_px - new_w) // 2, (rows * view_px - new_h) // 2
    sx, sy = new_w / width, new_h / height
    windows = [(0.0, 0.0, width * seen, height * seen)]
    for ty in range(rows):
        for tx in range(cols):
            left, top = tx * view_px - off_x, ty * view_px - off_y
            windows.append((left / sx, top / sy, (left + view_px * seen) / sx, (top + view_px * seen) / sy))
    return windows


def moved(item: ReadingItem, dx: float, dy: float, keep: tuple[int, int, int, int] | None = None) -> ReadingItem:
    """``item``'s glyphs and regions shifted by (dx, dy), as on a crop or a canvas; with ``keep`` (a box in the
    old coordinates) only what lies inside it. The image is dropped: labels need only the geometry."""

    def inside(box) -> bool:
        return keep is None or (box[0] >= keep[0] and box[1] >= keep[1] and box[2] <= keep[2] and box[3] <= keep[3])

    def shift(box):
        return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)

    numbers = [Printed(p.text, shift(p.box), p.cue, [(ch, shift(cell)) for ch, cell in p.chars])
               for p in item.numbers if inside(p.box)]
    regions = [(colour, shift(box)) for colour, box in item.regions if inside(box)]
    return dataclasses.replace(item, image=None, numbers=numbers, regions=regions)


def _block(model: LavidaModel, per_view: list[torch.Tensor], views: ImageViews, fill: int) -> torch.Tensor:
    maps = torch.stack(per_view)[..., None]  # [V, 196, 1]
    return model.layout_block(maps, views, torch.tensor([fill]))[:, 0]


def block_labels(model: LavidaModel, item: ReadingItem, views: ImageViews) -> tuple[torch.Tensor, torch.Tensor]:
    """Per visual position: the digit it shows (0-9, ``BACKGROUND``, or ``IGNORE`` for a sliver of one) and its
    region's colour (0 none, ``i + 1`` = ``COLOUR_NAMES[i]``)."""
    digits, colours = [], []
    for window in view_windows(views):
        d, c = patch_labels(item, window, POOLED)
        digits.append(torch.from_numpy(d))
        colours.append(torch.from_numpy(c))
    return _block(model, digits, views, IGNORE), _block(model, colours, views, 0)


def answer_positions(model: LavidaModel, item: ReadingItem, views: ImageViews, cue: str) -> torch.Tensor:
    """Per visual position: whether it holds any part of the number printed in the ``cue`` region."""
    answer = dataclasses.replace(item, numbers=[p for p in item.numbers if p.cue == cue], regions=[])
    found = [torch.from_numpy(patch_labels(answer, window, POOLED)[0] != BACKGROUND) for window in view_windows(views)]
    return _block(model, [f.long() for f in found], views, 0).bool()
