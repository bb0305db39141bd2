"""Cost of every selector / reducer against the SigLIP vision tower, and FastV's added LM prefill.

For each method: milliseconds per image for what the method adds -- its scoring and selection, plus the attention
maps it reads (computed from the captured queries/keys of one or two tower layers) -- on a 672 px view (48x48 =
2304 tokens) at real widths (SigLIP-so400m 1152, LM 4096), and that time as a fraction of the vision tower's. The
tower is random-init so400m width run with ``--layers`` encoder layers (2 by default, so a CPU run stays short);
its 26-layer time is extrapolated per layer, ``t26 = t_embed + 26 * (t_L - t_embed) / L``, unless
``--layers 26`` runs it whole. Targets: SHIRG's selectors <= 1 %, each field reducer <= 2 %.

FastV works inside the LM, so it is reported apart: its added prefill is ``lm_layers`` LLaDA layers over every
visual token instead of the kept ones, plus the ranking, ``L * (t_layer(text + N) - t_layer(text + k)) + t_rank``,
from one real-width LLaDA decoder layer timed at both lengths; shown against the prefill a vision-side reducer
with the same budget pays (32 layers over ``text + k``) and against the tower.

Every time is the fastest of its repeats (other load on a shared machine only adds time); the tower is timed before
and after the methods.

Run: ``python -m shirg_eval.bench.selection_bench [--layers 2] [--k 912 256] [--device cuda] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

FULL_LAYERS = 26  # so400m as LaViDa runs it (27 minus the dropped last layer)
LM_LAYERS = 32  # LLaDA-8B
TARGETS = {"shirg_fixed": 0.01, "shirg_original": 0.01}
REDUCER_TARGET = 0.02
# (label, selector, extra params); k is added per budget
METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("shirg_fixed", "shirg_fixed", {"scaffold": True}),
    ("shirg_original", "shirg_original", {}),
    ("visionzip", "visionzip", {}),
    ("divprune", "divprune", {}),
    ("dart", "dart", {}),
    ("hired", "hired", {}),
    ("prumerge", "prumerge", {}),
    ("prumerge_plus", "prumerge", {"plus": True}),
    ("tome", "tome", {}),
]
DIMS = {
    "real": {"vision": (1152, 4304, 16), "lm": (4096, 12288, 32)},
    "tiny": {"vision": (48, 96, 4), "lm": (64, 128, 4)},  # smoke runs and tests only
}


def _best_time(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Fastest of ``repeats`` timed calls: on a shared machine other load only ever adds time."""
    from shirg_eval.model.sampler import synced_perf_counter

    def timed() -> float:
        t0 = synced_perf_counter(device)
        fn()
        return synced_perf_counter(device) - t0

    for _ in range(warmup):
        timed()
    return min(timed() for _ in range(repeats))


def _build_tower(layers: int, width: tuple[int, int, int]) -> torch.nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    hidden, inter, heads = width
    cfg = SiglipVisionConfig(hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
                             num_hidden_layers=layers, patch_size=14, image_size=384, vision_use_head=False)
    torch.manual_seed(0)
    return SiglipVisionModel(cfg).eval()


def _build_lm_layer(width: tuple[int, int, int]):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    hidden, inter, heads = width
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
                      num_key_value_heads=heads, num_hidden_layers=1, vocab_size=32, rope_theta=500000.0)
    cfg._attn_implementation = "sdpa"  # as LaViDa's LM runs (a standalone layer has no dispatch otherwise)
    torch.manual_seed(0)
    return LlamaDecoderLayer(cfg, 0).eval(), LlamaRotaryEmbedding(cfg)


def _ms(t: float) -> str:
    return f"{t * 1e3:9.2f} ms"


def time_reducers(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, width: tuple[int, int, int],
                  lm_dim: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The tower's time and every method's per-image cost on the same machine."""
    import shirg_eval.selection as selection
    from shirg_eval.model.tower_probe import TowerProbe, attention_received
    from shirg_eval.selection.context import SelectionContext, ViewLayout

    grid = args.image_size // 14
    n = grid * grid
    tower = _build_tower(args.layers, width).to(device, dtype)
    pixels = torch.randn(1, 3, args.image_size, args.image_size, device=device, dtype=dtype)
    embeddings = getattr(tower, "vision_model", tower).embeddings
    with torch.inference_mode():
        t_tower = _best_time(lambda: tower(pixel_values=pixels, interpolate_pos_encoding=True),
                               args.repeats, args.warmup, device)
        t_embed = _best_time(lambda: embeddings(pixels, interpolate_pos_encoding=True),
                               args.repeats, args.warmup, device)
        with TowerProbe(tower, (0, -1), keys=True) as probe:
            features = tower(pixel_values=pixels, interpolate_pos_encoding=True,
                             output_hidden_states=True).hidden_states[-1]
    captured = {layer: (probe._get(idx, "q"), probe._get(idx, "k")) for layer, idx in probe.layers.items()}
    gen = torch.Generator(device="cpu").manual_seed(0)
    projected = torch.randn(1, n, lm_dim, generator=gen).to(device, dtype)
    text = torch.randn(1, args.text_len, lm_dim, generator=gen).to(device, dtype)
    layout = ViewLayout.single(n, device)
    rows = []
    with torch.inference_mode():
        for label, name, params in METHODS:
            for k in args.k:
                sel = selection.build_selector(name, **({} if name == "shirg_original" else {"k": k}), **params)
                needs = sel.needs_for(False)

                def run(sel=sel, needs=needs):
                    context = None
                    if needs.uses_context:
                        attention = {layer: attention_received(*captured[layer], probe.n_heads)
                                     for layer in needs.attention_layers}
                        keys = probe.keys() if needs.keys else None
                        context = SelectionContext(layout, attention, keys, probe.n_heads)
                    tokens = features if needs.features else projected
                    return sel(tokens, (grid, grid), None if needs.features else text, context=context)

                res = run()
                t = _best_time(run, args.selector_repeats, max(args.warmup, 1), device)
                target = TARGETS.get(label, REDUCER_TARGET)
                rows.append({"method": label, "k": k if name != "shirg_original" else "adaptive",
                             "lm_tokens": res.n_tokens[0], "ms": t * 1e3, "target": target,
                             "space": "features" if needs.features else "projected",
                             "tower_layers_read": list(needs.attention_layers) + (["keys"] if needs.keys else [])})
                if name == "shirg_original":
                    break
        # The tower again after the methods: the fastest of both rounds, so load on a shared machine during
        # one of them does not tilt the ratios.
        t_tower = min(t_tower, _best_time(lambda: tower(pixel_values=pixels, interpolate_pos_encoding=True),
                                          args.repeats, 0, device))
    per_layer = max(t_tower - t_embed, 0.0) / args.layers
    t_full = t_tower if args.layers == FULL_LAYERS else t_embed + FULL_LAYERS * per_layer
    tower_info = {"layers_run": args.layers, "measured_ms": t_tower * 1e3, "embeddings_ms": t_embed * 1e3,
                  "per_layer_ms": per_layer * 1e3, "full_26_layer_ms": t_full * 1e3,
                  "extrapolated": args.layers != FULL_LAYERS}
    for row in rows:
        row["fraction_of_tower"] = row["ms"] / 1e3 / t_full
        row["ok"] = row["fraction_of_tower"] <= row["target"]
    return tower_info, rows


def time_fastv(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, lm_width: tuple[int, int, int],
               t_tower_full_ms: float) -> list[dict[str, Any]]:
    """FastV's added prefill from one LLaDA layer timed over ``text + N`` and ``text + k`` tokens."""
    from shirg_eval.model.lavida import bidirectional_mask
    from shirg_eval.selection.selectors.fastv import text_to_visual_attention

    layer, rotary = _build_lm_layer(lm_width)
    layer, rotary = layer.to(device, dtype), rotary.to(device)
    hidden, _, heads = lm_width
    n = (args.image_size // 14) ** 2
    text = args.prompt_text_len
    out = []

    def layer_time(length: int) -> float:
        x = torch.randn(1, length, hidden, device=device, dtype=dtype)
        pos = torch.arange(length, device=device)[None]
        pe = rotary(x, position_ids=pos)
        mask = bidirectional_mask(1, length, length, dtype, device)
        return _best_time(lambda: layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe),
                            args.lm_repeats, 1, device)

    with torch.inference_mode():
        t_full = layer_time(text + n)
        q = torch.randn(1, heads, text + n, hidden // heads, device=device, dtype=dtype)
        span = (text // 2, text // 2 + n)
        t_rank = _best_time(lambda: text_to_visual_attention(q, q, span), args.lm_repeats, 1, device)
        for k in args.k:
            t_kept = layer_time(text + k)
            added = args.fastv_layers * (t_full - t_kept) + t_rank
            same_budget_prefill = LM_LAYERS * t_kept
            out.append({"k": k, "lm_layers": args.fastv_layers, "layer_full_ms": t_full * 1e3,
                        "layer_kept_ms": t_kept * 1e3, "rank_ms": t_rank * 1e3, "added_prefill_ms": added * 1e3,
                        "fraction_of_same_budget_prefill": added / same_budget_prefill,
                        "fraction_of_tower": added * 1e3 / t_tower_full_ms})
    return out


def check_probe(args: argparse.Namespace, device: torch.device, width: tuple[int, int, int]) -> float:
    """Max |probe - eager| over layers 0 and -1 of a 2-layer tower on ``device`` (fp32): the fast path is exact."""
    from shirg_eval.model.tower_probe import TowerProbe

    tower = _build_tower(2, width).to(device, torch.float32)
    eager = _build_tower(2, width).to(device, torch.float32)
    eager.set_attn_implementation("eager")
    pixels = torch.randn(1, 3, args.image_size, args.image_size, device=device)
    with torch.no_grad(), TowerProbe(tower, (0, -1)) as probe:
        tower(pixel_values=pixels, interpolate_pos_encoding=True)
        maps = eager(pixel_values=pixels, interpolate_pos_encoding=True, output_attentions=True).attentions
    got = probe.attention()
    return max(float((got[layer] - maps[layer].mean(dim=(1, 2))).abs().max()) for layer in (0, -1))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="encoder layers actually run (default 2; 26 = whole tower)")
    p.add_argument("--k", type=int, nargs="+", default=[912, 256], help="budgets (LM-side visual tokens)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the tower, before and after the methods (fastest)")
    p.add_argument("--selector-repeats", type=int, default=5, help="timed runs of each method (fastest)")
    p.add_argument("--lm-repeats", type=int, default=2, help="timed runs of the LLaDA layer (fastest)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-size", type=int, default=672)
    p.add_argument("--text-len", type=int, default=32, help="question tokens for text-conditioned selectors")
    p.add_argument("--prompt-text-len", type=int, default=64, help="non-visual prompt positions for FastV")
    p.add_argument("--fastv-layers", type=int, default=2)
    p.add_argument("--dims", choices=sorted(DIMS), default="real", help="real widths, or tiny for a smoke run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: fp32 CPU, bf16 CUDA")
    p.add_argument("--no-fastv", action="store_true", help="skip the LLaDA-layer timing")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--check-probe", action="store_true",
                   help="first compare the attention probe with eager attention maps on this device")
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args(argv)
    if args.layers < 1:
        p.error("--layers must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    dims = DIMS[args.dims]
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.machine()} {platform.processor() or ''}".strip() + f", {torch.get_num_threads()} threads")
    print(f"machine: {machine} | torch {torch.__version__} | {dtype} | dims {args.dims}")

    probe_error = None
    if args.check_probe:
        probe_error = check_probe(args, device, dims["vision"])
        print(f"attention probe vs eager maps (2-layer tower, fp32, {device}): max abs error {probe_error:.2e}")
    tower, rows = time_reducers(args, device, dtype, dims["vision"], dims["lm"][0])
    grid = args.image_size // 14
    print(f"SigLIP {'so400m width' if args.dims == 'real' else 'tiny'}, random init, {args.image_size} px -> "
          f"{grid}x{grid} tokens: {args.layers}-layer forward {tower['measured_ms']:.1f} ms "
          f"(embeddings {tower['embeddings_ms']:.1f}, per layer {tower['per_layer_ms']:.1f}); 26-layer "
          f"{'extrapolated' if tower['extrapolated'] else 'measured'} {tower['full_26_layer_ms']:.1f} ms")
    print(f"{'method':16s} {'k':>8s} {'LM tok':>6s} {'ms/image':>12s} {'of tower':>9s}  target  space      reads")
    for r in rows:
        print(f"{r['method']:16s} {str(r['k']):>8s} {r['lm_tokens']:6d} {_ms(r['ms'] / 1e3)}  "
              f"{r['fraction_of_tower']:8.3%}  {'<=' + format(r['target'], '.0%'):6s} {r['space']:10s} "
              f"{','.join(map(str, r['tower_layers_read'])) or '-'}  {'OK' if r['ok'] else 'ABOVE TARGET'}")
    fastv = []
    if not args.no_fastv:
        fastv = time_fastv(args, device, dtype, dims["lm"], tower["full_26_layer_ms"])
        print(f"FastV (in the LM, {args.fastv_layers} layers see all {grid * grid} visual tokens; "
              f"{args.prompt_text_len} text positions; one {'LLaDA-8B' if args.dims == 'real' else 'tiny'} layer "
              "timed per length):")
        for f in fastv:
            print(f"  k={f['k']:5d}: layer {f['layer_full_ms']:.1f} ms (all) vs {f['layer_kept_ms']:.1f} ms (kept), "
                  f"rank {f['rank_ms']:.2f} ms -> added prefill {f['added_prefill_ms']:.1f} ms = "
                  f"{f['fraction_of_same_budget_prefill']:.1%} of a {LM_LAYERS}-layer prefill at the same budget, "
                  f"{f['fraction_of_tower']:.1%} of the tower")
    above = [f"{r['method']}@{r['k']}" for r in rows if not r["ok"]]
    print("result: every method within its target" if not above else f"result: ABOVE TARGET: {', '.join(above)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "dtype": str(dtype), "dims": args.dims,
                                               "probe_max_abs_error": probe_error, "tower": tower,
                                               "methods": rows, "fastv": fastv}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
