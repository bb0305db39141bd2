"""Where the read layer's attention mass goes on the reading sets (issue #23).

For every view the attention-based reducers read (the 384 px view, the 672 px view, LaViDa's anyres whole-image view
and its tiles), the mean attention each patch receives at the feature layer (``TowerProbe``, layer -1) is summed
over four classes of patches, from the renderer's glyph boxes (``reference.dense.patch_labels`` on the view's
window):

- ``asked``: patches holding part of the digits of the asked region's number;
- ``glyphs``: patches holding part of any other printed number (doc distractor *words* count as background);
- ``cue``: the rest of the patches inside any cued region (bar / box colour);
- ``background``: everything else.

Each class is reported as its share of the attention mass and its share of the patches (``lift`` = mass / area:
above 1 means the layer attends to that class more than uniformly). Run with one thread::

    OMP_NUM_THREADS=1 python scripts/attention_probe.py --checkpoint models/reference --n 40 --out outputs/probe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from shirg_eval.data.reading import KINDS, ReadingItem, make_item
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.tower_probe import TowerProbe
from shirg_eval.reference.dense import BACKGROUND, PATCH, patch_labels
from shirg_eval.reference.labels import view_windows

CLASSES = ("asked", "glyphs", "cue", "background")
VIEWS = ("384", "672", "anyres_global", "anyres_tiles")


def patch_classes(item: ReadingItem, window: tuple[float, float, float, float], grid: int) -> np.ndarray:
    """``[grid * grid]`` class index (into ``CLASSES``) of every patch of a view covering ``window``."""
    asked_item = dataclasses.replace(item, numbers=[p for p in item.numbers if p.cue == item.cue])
    asked = patch_labels(asked_item, window, grid)[0].reshape(-1) != BACKGROUND
    glyph, colour = (np.asarray(a).reshape(-1) for a in patch_labels(item, window, grid))
    glyph = glyph != BACKGROUND
    out = np.full(grid * grid, 3, dtype=np.int64)
    out[colour > 0] = 2
    out[glyph] = 1
    out[asked] = 0
    return out


def probe_views(model: LavidaModel, item: ReadingItem) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per view kind: (attention received [N], patch classes [N]) of each view of that kind."""
    found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {v: [] for v in VIEWS}
    proc = model.image_processor
    for name, views in (("384", proc.single(item.image, 384, "resize")),
                        ("672", proc.single(item.image, 672, "resize")), ("anyres", proc.anyres(item.image))):
        px = int(views.pixel_values.shape[-1])
        grid = px // PATCH
        with torch.no_grad(), TowerProbe(model.vision_tower, (-1,)) as probe:
            model.encode_views(views.pixel_values)
        attention = probe.attention()[-1].numpy()  # [V, grid^2], each row sums to one
        for v, window in enumerate(view_windows(views, view_px=px)):
            kind = name if name != "anyres" else ("anyres_global" if v == 0 else "anyres_tiles")
            found[kind].append((attention[v], patch_classes(item, window, grid)))
    return found


def summarise(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    mass = np.zeros(len(CLASSES))
    area = np.zeros(len(CLASSES))
    for attention, classes in pairs:
        mass += np.bincount(classes, weights=attention, minlength=len(CLASSES))
        area += np.bincount(classes, minlength=len(CLASSES)) / classes.size
    mass, area = mass / max(len(pairs), 1), area / max(len(pairs), 1)
    return {c: {"mass": float(mass[i]), "area": float(area[i]),
                "lift": float(mass[i] / area[i]) if area[i] > 0 else float("nan")} for i, c in enumerate(CLASSES)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="models/reference")
    parser.add_argument("--n", type=int, default=40, help="documents per reading set")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--sets", default=",".join(KINDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = LavidaModel.from_pretrained(args.checkpoint, device="cpu", dtype="float32")
    report: dict[str, object] = {"checkpoint": args.checkpoint, "n": args.n, "split": args.split}
    start = time.time()
    for kind in args.sets.split(","):
        pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {v: [] for v in VIEWS}
        for i in range(args.n):
            for view, pairs in probe_views(model, make_item(kind, i, split=args.split)).items():
                pooled[view].extend(pairs)
        report[kind] = {view: summarise(pairs) for view, pairs in pooled.items()}
        for view in VIEWS:
            row = report[kind][view]
            print(f"{kind:6s} {view:14s} " + "  ".join(
                f"{c} {row[c]['mass']:.3f}/{row[c]['area']:.3f} (x{row[c]['lift']:.2f})" for c in CLASSES), flush=True)
    report["wall_s"] = round(time.time() - start, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
