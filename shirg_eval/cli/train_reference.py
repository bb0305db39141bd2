"""``shirg-train-reference``: train the reference mini-LaViDa from scratch on the hard reading sets.

Every knob of :class:`shirg_eval.reference.train.Recipe` is a flag (``--dense-steps``, ``--qa-lr``, ...); the
stages, checkpoints and resume rules are described in :mod:`shirg_eval.reference.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from ..reference.train import Recipe, train


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="shirg-train-reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/reference", help="run folder (checkpoints, log, final model)")
    for f in dataclasses.fields(Recipe):
        value = getattr(defaults, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, type=_boolean, default=value, help=f"true or false (default {str(value).lower()})")
        elif isinstance(value, tuple):
            kind = type(value[0])
            parser.add_argument(flag, type=lambda s, kind=kind: tuple(kind(x) for x in s.split(",")), default=value,
                                help=f"comma list (default {','.join(map(str, value))})")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from OUT/latest")
    parser.add_argument("--overwrite", action="store_true", help="delete --out and start again")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers rendering batches")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (with a checkpoint) after this long; --resume continues")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)})
    result = train(args.out, recipe, resume=args.resume, overwrite=args.overwrite, device=args.device,
                   workers=args.workers, max_minutes=args.max_minutes)
    print(f"{'reference model' if result.name == 'final' else 'out of time; newest checkpoint'}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
