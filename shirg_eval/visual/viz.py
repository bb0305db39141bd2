"""Pictures of token selections and position-embedding diagnostics: drawing functions, the picture of one
:class:`~shirg_eval.model.lavida.VisualSequence`, and the 672-vs-384 px position-embedding similarity.

``draw_selection`` uses PIL so pixels are exact (kept patches keep full brightness, dropped ones are
dimmed); ``draw_posembed_heatmap`` uses matplotlib's object API with the Agg canvas, so no global pyplot
state or display backend is touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

if TYPE_CHECKING:
    from ..model.lavida import VisualSequence
    from .path import VisualPath

__all__ = [
    "anyres_picture",
    "picture_of",
    "posembed_similarity",
    "DIM_FACTOR",
    "TITLE_HEIGHT",
    "cell_size",
    "draw_posembed_heatmap",
    "draw_selection",
    "pooled_cosine_map",
    "save_selection",
]

TITLE_HEIGHT = 28  # px band above the picture for the title / token count
DIM_FACTOR = 0.3  # dropped patches are shown at 30% brightness
_KEPT_OUTLINE = (255, 200, 0)
_REGION_LINE = (0, 170, 255)


def cell_size(grid_hw: tuple[int, int], display: int = 672) -> int:
    """Pixels per grid cell: the long side is ~``display`` px (672 / 48 = 14, the actual patch size)."""
    return max(4, display // max(grid_hw))


def _as_index_list(kept_indices: Tensor | Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(kept_indices, Tensor):
        return kept_indices.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return np.asarray(kept_indices, dtype=np.int64).reshape(-1)


def draw_selection(
    image: Image.Image,
    kept_indices: Tensor | Sequence[int] | np.ndarray,
    grid_hw: tuple[int, int],
    *,
    region: int | None = None,
    title: str | None = None,
    n_tokens: int | None = None,
    cell_px: int | None = None,
) -> Image.Image:
    """The image (resized to the grid, ``cell_px`` per cell) with dropped patches dimmed.

    Returns an RGB image of size ``(W * cell, H * cell + TITLE_HEIGHT)``. Kept patches keep their
    original pixels (plus a thin outline when cells are large enough to show it), dropped patches are
    scaled to ``DIM_FACTOR`` brightness, and with ``region`` the ``region x region`` scaffold/coverage
    cells are outlined. The title band shows ``title`` and the token count (``n_tokens`` if given, which
    may include scaffold tokens, else the number kept).
    """
    h, w = int(grid_hw[0]), int(grid_hw[1])
    cell = cell_px or cell_size((h, w))
    kept = _as_index_list(kept_indices)
    if kept.size and (kept.min() < 0 or kept.max() >= h * w):
        raise ValueError(f"kept_indices out of range for grid {h}x{w}")
    pic = np.asarray(image.convert("RGB").resize((w * cell, h * cell), Image.Resampling.BICUBIC))
    mask = np.zeros(h * w, dtype=bool)
    mask[kept] = True
    # Expand the per-cell mask to pixels, then dim everything not kept.
    pix_mask = np.kron(mask.reshape(h, w), np.ones((cell, cell), dtype=bool))
    out = pic.astype(np.float32)
    out[~pix_mask] *= DIM_FACTOR
    canvas = Image.new("RGB", (w * cell, h * cell + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(out.clip(0, 255).astype(np.uint8)), (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    if cell >= 8:
        # Outline inside the cell so neighbouring kept cells stay distinguishable.
        for idx in kept.tolist():
            r, c = divmod(idx, w)
            x0, y0 = c * cell, TITLE_HEIGHT + r * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline=_KEPT_OUTLINE, width=1)
    if region:
        for c in range(0, w + 1, region):
            x = min(c * cell, w * cell - 1)
            draw.line([(x, TITLE_HEIGHT), (x, TITLE_HEIGHT + h * cell - 1)], fill=_REGION_LINE, width=1)
        for r in range(0, h + 1, region):
            y = TITLE_HEIGHT + min(r * cell, h * cell - 1)
            draw.line([(0, y), (w * cell - 1, y)], fill=_REGION_LINE, width=1)
    count = n_tokens if n_tokens is not None else int(kept.size)
    label = f"{count} tokens (kept {int(kept.size)}/{h * w} of {h}x{w})"
    text = f"{title}  |  {label}" if title else label
    draw.text((6, 6), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return canvas


def save_selection(
    path: str | os.PathLike[str],
    image: Image.Image,
    kept_indices: Tensor | Sequence[int] | np.ndarray,
    grid_hw: tuple[int, int],
    **kwargs: object,
) -> Path:
    """``draw_selection(...)`` written as PNG to ``path`` (parent dirs created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_selection(image, kept_indices, grid_hw, **kwargs).save(out, format="PNG")  # type: ignore[arg-type]
    return out


def draw_posembed_heatmap(
    similarity: np.ndarray | Tensor, title: str, *, figsize: tuple[float, float] = (5.0, 4.4), dpi: int = 100
) -> Image.Image:
    """Heat map of an ``[h, w]`` similarity array with a colour bar and min/mean annotated.

    Returns an RGB image of ``figsize * dpi`` pixels (500x440 by default).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sim = similarity.detach().cpu().numpy() if isinstance(similarity, Tensor) else np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D [h, w], got shape {sim.shape}")
    sim = sim.astype(np.float64)
    fig = Figure(figsize=figsize, dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(sim, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"min {np.nanmin(sim):.3f}   mean {np.nanmean(sim):.3f}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


def pooled_cosine_map(
    features_hr: Tensor, grid_hr: tuple[int, int], features_lr: Tensor, grid_lr: tuple[int, int]
) -> Tensor:
    """``[Hl, Wl]`` cosine similarity between low-res features and high-res features pooled to that grid.

    The high-res grid is adaptive-average-pooled down to ``grid_lr`` so each low-res position is compared
    with the same image area seen at high resolution (e.g. 672 px -> 48x48 pooled to 27x27 vs 384 px).
    """
    hh, wh = grid_hr
    hl, wl = grid_lr
    if features_hr.shape[0] != hh * wh or features_lr.shape[0] != hl * wl:
        raise ValueError(
            f"features do not match grids: hr {tuple(features_hr.shape)} vs {hh}x{wh}, "
            f"lr {tuple(features_lr.shape)} vs {hl}x{wl}"
        )
    if features_hr.shape[1] != features_lr.shape[1]:
        raise ValueError("high- and low-res features must have the same channel count")
    with torch.no_grad():
        hr = features_hr.detach().float().T.reshape(1, -1, hh, wh)
        pooled = F.adaptive_avg_pool2d(hr, (hl, wl)).reshape(-1, hl * wl).T  # [Hl*Wl, C]
        cos = F.cosine_similarity(pooled, features_lr.detach().float().to(pooled.device), dim=-1, eps=1e-8)
    return cos.reshape(hl, wl)


def picture_of(visual: VisualSequence, path: VisualPath, native_grid: int) -> Image.Image:
    """Picture of one :class:`VisualSequence` made by ``path`` (the release path keeps every patch)."""
    view = visual.views.views[0]
    if getattr(path, "anyres", False):
        return anyres_picture(visual, path.name, native_grid)
    if visual.kept_indices is None or visual.grid_hw is None:  # release path: nothing is dropped
        h = w = native_grid
        kept = torch.arange(h * w)
        grid = (h, w)
    else:
        kept, grid = visual.kept_indices, visual.grid_hw
    region = getattr(path.selector, "region", None)  # the coverage/scaffold cells of the selectors that have them
    title = path.name
    return draw_selection(view, kept, grid, region=region, title=title, n_tokens=visual.n_tokens)


def anyres_picture(visual: VisualSequence, title: str, side: int) -> Image.Image:
    """Anyres selection: the whole-image view beside the tile map, each with its kept tokens highlighted."""
    cols, rows = visual.views.grid_wh
    tiles = visual.views.views[1:]
    size = tiles[0].size[0]
    canvas = Image.new("RGB", (cols * size, rows * size))
    for t, tile in enumerate(tiles):
        canvas.paste(tile, ((t % cols) * size, (t // cols) * size))
    kept = visual.kept_indices.cpu()
    base_kept = kept[kept < side * side]
    map_kept = kept[kept >= side * side] - side * side
    cell = max(4, 336 // side)
    left = draw_selection(visual.views.views[0], base_kept, (side, side), title=title, n_tokens=visual.n_tokens,
                          cell_px=cell)
    right = draw_selection(canvas, map_kept, (rows * side, cols * side), title="tiles", cell_px=cell)
    out = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, 0))
    out.paste(right, (left.width, 0))
    return out


def posembed_similarity(model, image: Image.Image, resolution: int = 672) -> torch.Tensor:
    """Per-position cosine between 672 px features pooled back to 27x27 and the 384 px features of the image."""
    proc = model.image_processor
    native = model.config.vision.image_size
    with torch.no_grad():
        low = model.encode_views(proc.single(image, native).pixel_values)[0]
        high = model.encode_views(proc.single(image, resolution).pixel_values)[0]
    side_lo = native // model.config.vision.patch_size
    side_hi = resolution // model.config.vision.patch_size
    return pooled_cosine_map(high, (side_hi, side_hi), low, (side_lo, side_lo))
