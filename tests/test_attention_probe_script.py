"""scripts/attention_probe.py: patch classes follow the renderer's glyph boxes and the shares add up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from shirg_eval.data.reading import make_item

_SPEC = importlib.util.spec_from_file_location(
    "attention_probe", Path(__file__).resolve().parents[1] / "scripts" / "attention_probe.py")
probe = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(probe)


def test_patch_classes_put_the_asked_digits_where_the_renderer_printed_them():
    item = make_item("doc", 0, split="validation")
    width, height = item.image.size
    side = max(width, height)
    window = (0.0, 0.0, float(side), float(side))
    grid = side // 14
    classes = probe.patch_classes(item, window, grid)
    assert classes.shape == (grid * grid,) and set(np.unique(classes)) <= {0, 1, 2, 3}
    asked = [p for p in item.numbers if p.cue == item.cue]
    assert asked and (classes == 0).any()
    x0, y0, x1, y1 = asked[0].box
    cells = {(int((y0 + y1) / 2 * grid / side)) * grid + int((cx0 + cx1) / 2 * grid / side)
             for _, (cx0, _, cx1, _) in asked[0].chars}
    assert any(classes[c] == 0 for c in cells)


def test_summary_shares_sum_to_one():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(3):
        attention = rng.random(49)
        pairs.append((attention / attention.sum(), rng.integers(0, 4, 49)))
    row = probe.summarise(pairs)
    assert abs(sum(row[c]["mass"] for c in probe.CLASSES) - 1) < 1e-9
    assert abs(sum(row[c]["area"] for c in probe.CLASSES) - 1) < 1e-9


def test_glyph_probe_head_learns_separable_digits():
    spec = importlib.util.spec_from_file_location(
        "glyph_probe", Path(__file__).resolve().parents[1] / "scripts" / "glyph_probe.py")
    glyph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glyph)
    torch.manual_seed(0)
    centres = torch.randn(11, 16) * 4
    y = torch.arange(11).repeat(30)
    x = centres[y] + torch.randn(y.numel(), 16) * 0.5
    heads = glyph.fit_digit_probe(x, y, steps=200)
    with torch.no_grad():
        pred = heads.digit((x - heads.mean) / heads.std).argmax(-1)
    assert float((pred == y).float().mean()) > 0.95
    shuffled = glyph.fit_digit_probe(x, y[torch.randperm(y.numel())], steps=200)
    with torch.no_grad():
        held = centres[y] + torch.randn(y.numel(), 16) * 0.5
        assert float((shuffled.digit((held - shuffled.mean) / shuffled.std).argmax(-1) == y).float().mean()) < 0.5
