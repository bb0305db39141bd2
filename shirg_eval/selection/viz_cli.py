"""``shirg-viz``: pictures of what a variant kept, and the interpolated position-embedding diagnostic.

    shirg-viz IMAGE --variant shirg_fixed [--question "..."] -o out.png [--pretrained CKPT] [--lora DIR]
    shirg-viz --posembed IMAGE -o heat.png [--pretrained CKPT]

A checkpoint or adapter that cannot be used ends in one line naming this command's option, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..model.config import CheckpointError, CheckpointNotFoundError
from ..model.loading import DEFAULT_PRETRAINED
from ..model.sampler import GenerationConfig
from ..visual.variants import VARIANTS
from ..visual.viz import draw_posembed_heatmap, draw_selection, pooled_cosine_map

if TYPE_CHECKING:
    from ..model.lavida import VisualSequence
    from ..pipeline import ShirgPipeline
    from ..visual.path import VisualPath


def selected_visual(pipeline: ShirgPipeline, image: Image.Image, question: str = "") -> VisualSequence:
    """What the LM receives for ``image``: the visual path's output, or for an in-LM selector (FastV, which keeps
    every token on the visual side) what its prefill kept, from one answer of a single token."""
    if pipeline.path.in_lm:
        return pipeline.answer(image, question, GenerationConfig(gen_length=1)).visual
    with torch.no_grad():
        return pipeline.path(image, pipeline.question_embeds(question), pipeline.generator)


def selection_picture(pipeline: ShirgPipeline, image: Image.Image, question: str = "") -> Image.Image:
    """The view the selector saw, kept patches highlighted, regions outlined, token count in the title."""
    return picture_of(selected_visual(pipeline, image, question), pipeline.path, pipeline.model.config.vision_grid)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-viz", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("image", nargs="?", help="image to show a selection on")
    parser.add_argument("--posembed", metavar="IMAGE", help="position-embedding diagnostic heat map for IMAGE")
    parser.add_argument("--variant", default="shirg_fixed", choices=list(VARIANTS))
    parser.add_argument("--question", default="")
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED)
    parser.add_argument("--lora", default=None)
    parser.add_argument("--allow-base-mismatch", "--allow_base_mismatch", action="store_true",
                        help="load a --lora trained on other base weights (printed with the LoRA line)")
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--resolution", type=int, default=672, help="high resolution for --posembed")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    if not args.image and not args.posembed:
        parser.error("give an IMAGE, or --posembed IMAGE")
    from ..model.adapters import AdapterError
    from ..pipeline import ShirgPipeline

    params = {"k": args.k} if args.k else {}
    try:
        pipeline = ShirgPipeline(args.pretrained, args.variant, lora=args.lora,
                                 allow_base_mismatch=args.allow_base_mismatch, **params)
    except CheckpointNotFoundError as err:
        parser.exit(2, f"shirg-viz: error: {err.with_flag('--pretrained')}\n")
    except (CheckpointError, AdapterError) as err:
        parser.exit(2, f"shirg-viz: error: {err}\n")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.posembed:
        sim = posembed_similarity(pipeline.model, Image.open(args.posembed), args.resolution)
        title = f"cos(pool({args.resolution}px) , 384px) per 27x27 position: min {sim.min():.3f}, mean {sim.mean():.3f}"
        draw_posembed_heatmap(sim.cpu().numpy(), title).save(out)
        corners = [sim[0, 0], sim[0, -1], sim[-1, 0], sim[-1, -1]]
        print(f"mean {sim.mean():.4f}  min {sim.min():.4f}  corners {[round(float(c), 4) for c in corners]}")
    else:
        selection_picture(pipeline, Image.open(args.image), args.question).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
