"""``shirg-make-tiny``: write a tiny random-init LaViDa checkpoint (released layout, offline tokenizer)."""

from __future__ import annotations

import argparse
import sys

from ..model.tiny import make_tiny_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-make-tiny", description=__doc__)
    parser.add_argument("out", help="directory to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-aspect-ratio", default="anyres", choices=["anyres", "pad"])
    args = parser.parse_args(argv)
    path = make_tiny_checkpoint(args.out, seed=args.seed, image_aspect_ratio=args.image_aspect_ratio)
    print(f"tiny LaViDa checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
