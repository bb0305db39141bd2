"""``shirg-viz``: pictures of what a variant kept, and the interpolated position-embedding diagnostic.

    shirg-viz IMAGE --variant shirg_fixed [--question "..."] -o out.png [--pretrained CKPT] [--lora DIR]
    shirg-viz --posembed IMAGE -o heat.png [--pretrained CKPT]

A checkpoint or adapter that cannot be used ends in one line naming this command's option, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ..model.config import CheckpointError, CheckpointNotFoundError
from ..model.loading import DEFAULT_PRETRAINED
from ..visual.variants import VARIANTS
from ..visual.viz import draw_posembed_heatmap, posembed_similarity


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
        pipeline.selection_picture(Image.open(args.image), args.question).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
