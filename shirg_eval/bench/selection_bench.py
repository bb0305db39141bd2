"""Selector cost vs the SigLIP vision encoder on the same machine.

Times ``shirg_fixed`` (k=768, scaffold, 32-token question) and ``shirg_original`` on 48x48 projected
tokens of LM width 4096, against a random-init so400m-width SigLIP vision tower run on a 672 px image
(``interpolate_pos_encoding=True``). The tower is built with only ``--layers`` encoder layers (2 by default
so a CPU run stays short); its time is also extrapolated linearly per layer to the full 26 layers:
``t26 = t_embed + 26 * (t_L - t_embed) / L`` with the patch/position embedding timed separately.
The target is selection <= 1% of the vision-encoder time.

Run: ``python -m shirg_eval.bench.selection_bench [--layers 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

FULL_LAYERS = 26  # so400m depth; LaViDa reads layer -2, the difference is one layer (~4%), ignored here
TARGET_RATIO = 0.01


def _median_time(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _build_tower(layers: int) -> torch.nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_attention_heads=16,
        num_hidden_layers=layers,
        patch_size=14,
        image_size=384,
        vision_use_head=False,  # LaViDa uses patch features, not the pooled head
    )
    torch.manual_seed(0)
    return SiglipVisionModel(cfg).eval()


def _fmt_ms(t: float) -> str:
    return f"{t * 1e3:9.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="encoder layers actually run (default 2 on CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of the encoder (median)")
    p.add_argument("--selector-repeats", type=int, default=30, help="timed runs of each selector (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-size", type=int, default=672)
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--lm-dim", type=int, default=4096)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = p.parse_args(argv)
    if args.layers < 1:
        p.error("--layers must be >= 1")

    import shirg_eval.selection as selection

    if args.threads:
        torch.set_num_threads(args.threads)
    grid = args.image_size // 14
    torch.manual_seed(0)
    tokens = torch.randn(1, grid * grid, args.lm_dim)
    text = torch.randn(1, args.text_len, args.lm_dim)
    pixels = torch.randn(1, 3, args.image_size, args.image_size)

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}".rstrip(),
        f"| torch {torch.__version__}",
        f"| threads {torch.get_num_threads()} | device cpu",
    )
    print(
        f"selector input: tokens [1, {grid * grid}, {args.lm_dim}] ({grid}x{grid} grid), "
        f"text [1, {args.text_len}, {args.lm_dim}]"
    )

    sel_times: dict[str, float] = {}
    sel_fixed = selection.build_selector("shirg_fixed", k=args.k, scaffold=True)
    sel_orig = selection.build_selector("shirg_original")
    with torch.inference_mode():
        for label, sel in ((f"shirg_fixed k={args.k} +scaffold", sel_fixed), ("shirg_original", sel_orig)):
            res = sel.select(tokens, (grid, grid), text)
            t = _median_time(
                lambda s=sel: s.select(tokens, (grid, grid), text), args.selector_repeats, max(args.warmup, 2)
            )
            sel_times[label] = t
            print(f"  {label:32s} {_fmt_ms(t)}  -> {res.n_tokens[0]} tokens")

        tower = _build_tower(args.layers)
        # transformers 5 flattened SiglipVisionModel; 4.x kept the parts under .vision_model
        embeddings = getattr(tower, "vision_model", tower).embeddings
        t_enc = _median_time(
            lambda: tower(pixel_values=pixels, interpolate_pos_encoding=True), args.repeats, args.warmup
        )
        t_emb = _median_time(
            lambda: embeddings(pixels, interpolate_pos_encoding=True),
            args.repeats,
            args.warmup,
        )
    per_layer = max(t_enc - t_emb, 0.0) / args.layers
    t_full = t_emb + FULL_LAYERS * per_layer
    print(
        f"SigLIP so400m width (1152/4304/16 heads, patch 14), random init, {args.image_size}px "
        f"-> {grid}x{grid} tokens, interpolate_pos_encoding=True"
    )
    print(
        f"  NOTE: only {args.layers} of {FULL_LAYERS} encoder layers run (CPU); 26-layer time is a linear "
        "per-layer extrapolation"
    )
    print(
        f"  measured {args.layers}-layer forward  {_fmt_ms(t_enc)}  (embeddings {_fmt_ms(t_emb).strip()}, "
        f"per layer {_fmt_ms(per_layer).strip()})"
    )
    print(f"  extrapolated {FULL_LAYERS}-layer forward {_fmt_ms(t_full)}")
    print(f"ratios (selection / vision encoder), target <= {TARGET_RATIO:.0%}:")
    ok_all = True
    for label, t in sel_times.items():
        r_meas, r_full = t / t_enc, t / t_full
        ok = r_full <= TARGET_RATIO
        ok_all &= ok
        print(
            f"  {label:32s} vs {args.layers}-layer: {r_meas:7.2%}   vs {FULL_LAYERS}-layer (extrap.): "
            f"{r_full:7.3%}  {'OK' if ok else 'ABOVE TARGET'}"
        )
    print(
        f"result: {'selection within' if ok_all else 'selection ABOVE'} 1% of the (26-layer) vision encoder"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
