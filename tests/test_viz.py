"""Tests for the selection / position-embedding pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shirg_eval.visual.viz import (
    TITLE_HEIGHT,
    cell_size,
    draw_posembed_heatmap,
    draw_selection,
    pooled_cosine_map,
    save_selection,
)


def _gray(size: tuple[int, int] = (300, 200), value: int = 200) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def _cell_centre_pixel(img: Image.Image, idx: int, grid_hw: tuple[int, int], cell: int) -> np.ndarray:
    r, c = divmod(idx, grid_hw[1])
    arr = np.asarray(img).astype(int)
    return arr[TITLE_HEIGHT + r * cell + cell // 2, c * cell + cell // 2]


@pytest.mark.parametrize("grid", [(48, 48), (5, 7), (27, 27)])
def test_draw_selection_size_and_marks_kept(grid: tuple[int, int]) -> None:
    h, w = grid
    kept = torch.arange(0, h * w, 3)
    img = draw_selection(_gray(), kept, grid, region=4, title="shirg_fixed", n_tokens=912)
    cell = cell_size(grid)
    assert img.mode == "RGB"
    assert img.size == (w * cell, h * cell + TITLE_HEIGHT)
    kept_px = _cell_centre_pixel(img, 0, grid, cell)
    dropped_px = _cell_centre_pixel(img, 1, grid, cell)
    assert kept_px.mean() > 180  # kept patch keeps its brightness
    assert dropped_px.mean() < 100  # dropped patch dimmed
    assert kept_px.mean() - dropped_px.mean() > 80


def test_draw_selection_accepts_lists_and_checks_range() -> None:
    img = draw_selection(_gray(), [0, 5, 11], (3, 4), cell_px=10)
    assert img.size == (40, 30 + TITLE_HEIGHT)
    with pytest.raises(ValueError, match="out of range"):
        draw_selection(_gray(), [12], (3, 4))


def test_draw_selection_title_band_has_text() -> None:
    img = draw_selection(_gray(), [0], (4, 4), title="demo", n_tokens=5)
    band = np.asarray(img)[:TITLE_HEIGHT]
    assert (band < 128).any()  # some dark text pixels in the white band


def test_save_selection_writes_png(tmp_path) -> None:
    out = save_selection(tmp_path / "sub" / "sel.png", _gray(), torch.tensor([1, 2]), (4, 4), region=2)
    assert out.exists()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (4 * cell_size((4, 4)), 4 * cell_size((4, 4)) + TITLE_HEIGHT)


def test_posembed_heatmap() -> None:
    sim = np.linspace(0.2, 1.0, 27 * 27).reshape(27, 27)
    img = draw_posembed_heatmap(sim, "672 pooled vs 384")
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (500, 440)
    assert np.asarray(img).std() > 10  # not blank
    img2 = draw_posembed_heatmap(torch.rand(4, 6), "t", figsize=(3.0, 2.0), dpi=50)
    assert img2.size == (150, 100)
    with pytest.raises(ValueError):
        draw_posembed_heatmap(np.zeros(5), "bad")


def test_pooled_cosine_map() -> None:
    g = torch.Generator().manual_seed(0)
    hr = torch.randn(48 * 48, 16, generator=g)
    lr = F.adaptive_avg_pool2d(hr.T.reshape(1, 16, 48, 48), (27, 27)).reshape(16, -1).T
    cos = pooled_cosine_map(hr, (48, 48), lr, (27, 27))
    assert cos.shape == (27, 27)
    torch.testing.assert_close(cos, torch.ones(27, 27), atol=1e-5, rtol=0)
    neg = pooled_cosine_map(hr, (48, 48), -lr, (27, 27))
    torch.testing.assert_close(neg, -torch.ones(27, 27), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        pooled_cosine_map(hr, (48, 47), lr, (27, 27))
