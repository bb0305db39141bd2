"""How legible the reading sets' digits are to a tower, per scale (issue #23, glyph calibration).

A fresh :class:`~shirg_eval.reference.dense.ReadingHeads` digit head (the card's linear probe) is fitted on the
frozen layer -2 features of ``train`` items and scored on ``validation`` items, per scale:

- ``384``: the 384 px single view (27 x 27 patches);
- ``672``: the 672 px view, unpooled (48 x 48);
- ``672_pool2``: the 672 px view after 2x2 average pooling (24 x 24);
- ``release``: LaViDa's anyres views pooled bilinearly 27 -> 14 (what the LM reads).

Labels come from the renderer's glyph boxes (``dense.patch_labels`` on each view's window). Reported: digit
accuracy on the patches that hold a digit, and the patches' count. One thread::

    OMP_NUM_THREADS=1 python scripts/glyph_probe.py --checkpoint models/reference --train 30 --val 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from shirg_eval.data.reading import KINDS, make_item
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.reference.dense import BACKGROUND, ReadingHeads, patch_labels
from shirg_eval.reference.labels import view_windows

SCALES = ("384", "672", "672_pool2", "release")


def scale_features(model: LavidaModel, item, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``([P, C] features, [P] digit labels)`` of every patch / cell of ``item`` at ``scale``."""
    proc = model.image_processor
    views = proc.anyres(item.image) if scale == "release" else proc.single(item.image, int(scale[:3]), "resize")
    px = int(views.pixel_values.shape[-1])
    with torch.no_grad():
        feats = model.encode_views(views.pixel_values)  # [V, g*g, C]
    v, n, c = feats.shape
    g = int(n**0.5)
    maps = feats.transpose(1, 2).reshape(v, c, g, g)
    if scale == "672_pool2":
        maps = F.avg_pool2d(maps, 2)
    elif scale == "release":
        maps = F.interpolate(maps, size=(14, 14), mode="bilinear", align_corners=False)
    out_g = maps.shape[-1]
    labels = [torch.from_numpy(patch_labels(item, w, out_g)[0]).reshape(-1) for w in view_windows(views, view_px=px)]
    return maps.flatten(2).transpose(1, 2).reshape(-1, c), torch.cat(labels)


def collect(model: LavidaModel, scale: str, n: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in range(n):
        for kind in KINDS:
            x, y = scale_features(model, make_item(kind, i, split=split), scale)
            keep = (y >= 0) & (y <= BACKGROUND)
            xs.append(x[keep])
            ys.append(y[keep])
    return torch.cat(xs), torch.cat(ys)


def fit_digit_probe(x: torch.Tensor, y: torch.Tensor, steps: int = 300, seed: int = 0) -> ReadingHeads:
    """The digit head of :class:`ReadingHeads` fitted by full-batch Adam (digits up-weighted vs background)."""
    torch.manual_seed(seed)
    heads = ReadingHeads(x.shape[1])
    mean, std = x.mean(0), x.std(0) + 1e-6
    heads.register_buffer("mean", mean)
    heads.register_buffer("std", std)
    weight = torch.ones(BACKGROUND + 1)
    n_digit = int((y < BACKGROUND).sum())
    weight[BACKGROUND] = max(n_digit, 1) / max(int((y == BACKGROUND).sum()), 1)
    opt = torch.optim.Adam(heads.digit.parameters(), lr=1e-2, weight_decay=1e-4)
    z = (x - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(heads.digit(z), y, weight=weight).backward()
        opt.step()
    return heads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="models/reference")
    parser.add_argument("--train", type=int, default=30, help="train items per set")
    parser.add_argument("--val", type=int, default=20, help="validation items per set")
    parser.add_argument("--scales", default=",".join(SCALES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = LavidaModel.from_pretrained(args.checkpoint, device="cpu", dtype="float32").eval()
    rows = []
    for scale in args.scales.split(","):
        start = time.time()
        heads = fit_digit_probe(*collect(model, scale, args.train, "train"))
        x, y = collect(model, scale, args.val, "validation")
        with torch.no_grad():
            pred = heads.digit((x - heads.mean) / heads.std).argmax(-1)
        digit = y < BACKGROUND
        row = {"scale": scale, "digit_accuracy": round(100 * float((pred[digit] == y[digit]).float().mean()), 1),
               "digit_patches": int(digit.sum()), "wall_s": round(time.time() - start, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
