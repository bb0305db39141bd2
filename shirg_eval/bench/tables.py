"""Plain-text tables for ``shirg-bench`` reports (stdout and the GPU summary's markdown share them)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate


def fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def span(stats: dict[str, float] | None, spec: str = ".1f") -> str:
    """``median [min, max]`` of a spread dict."""
    if not stats:
        return "-"
    return f"{stats['median']:{spec}} [{stats['min']:{spec}}, {stats['max']:{spec}}]"


def stage_table(report: dict[str, Any], fmt_name: str = "simple") -> str:
    rows = []
    for name, v in report["variants"].items():
        f = v["figures"]
        mem = v.get("peak_memory") or {}
        rows.append([name, v["visual_tokens"], fmt(v["preprocess_ms"], ".1f"), fmt(v["vision_ms"], ".1f"),
                     fmt(v["projector_ms"], ".1f"), fmt(v["selection_ms"], ".2f"), fmt(v["prefill_ms"], ".1f"),
                     fmt(v["step_ms"], ".2f"), fmt(v["denoise_ms"], ".1f"), span(f["latency_ms"]),
                     span((v.get("nocache") or {}).get("denoise_ms")), f"{v['selection_share_of_vision'] * 100:.2f}%",
                     fmt(mem.get("delta_gb"), ".3f"), fmt(v["prefix_kv_mb"], ".2f")])
    kind = next((v["peak_memory"]["kind"] for v in report["variants"].values() if v.get("peak_memory")), "-")
    return tabulate(rows, tablefmt=fmt_name, headers=[
        "variant", "vis tok", "preproc ms (CPU)", "vision ms", "proj ms", "select ms", "prefill ms", "step ms",
        "denoise ms", "latency ms [min, max]", "no-cache denoise ms [min, max]", "select/vision",
        f"peak mem GB ({kind} delta)", "prefix KV MB"])


def predicted_stage_table(report: dict[str, Any], fmt_name: str = "simple") -> str:
    """Measured median stage times beside the cost model's predictions at the same dims (with the profile's
    measured overheads, if any; the last column is the roofline alone)."""
    rows = []
    for name, v in report["variants"].items():
        p = v["predicted_ms"]
        rows.append([name, f"{v['vision_ms'] + v['projector_ms']:.1f} / {p['vision'] + p['projector']:.1f}",
                     f"{v['selection_ms']:.2f} / {p['selection']:.2f}", f"{v['prefill_ms']:.1f} / {p['prefill']:.1f}",
                     f"{v['denoise_ms']:.1f} / {p['denoise_cached']:.1f}",
                     f"{v['nocache_denoise_ms']:.1f} / {p['denoise_nocache']:.1f}" if "nocache_denoise_ms" in v else "-",
                     f"{v['latency_ms']:.1f} / {p['latency']:.1f}",
                     fmt(p.get("latency_roofline"), ".1f")])
    return tabulate(rows, tablefmt=fmt_name, headers=[
        "variant", "vision+proj ms meas / pred", "select ms", "prefill ms", "denoise ms (cache)",
        "denoise ms (no cache)", "latency ms", "roofline latency ms"])


def ratio_table(report: dict[str, Any], fmt_name: str = "simple") -> str:
    rows = [[r["name"], f"{r['median']:.3f}", f"[{r['min']:.3f}, {r['max']:.3f}]", f"{r['spread']:.3f}",
             fmt(r["predicted"], ".3f"), fmt(r["measured_over_predicted"], ".2f"), fmt(r.get("roofline"), ".3f"),
             "NOISY: spread > |median-1|" if r["noisy"] else ""] for r in report["ratios"]]
    return tabulate(rows, tablefmt=fmt_name, headers=[
        "ratio (per round)", "median", "[min, max]", "spread", "predicted", "meas/pred", "roofline", "flag"])


def target_table(report: dict[str, Any], fmt_name: str = "simple") -> str:
    rows = [[t["target"], t["threshold"], fmt(t["measured"], ".3f"),
             "-" if t["min"] is None else f"[{t['min']:.3f}, {t['max']:.3f}]", fmt(t["predicted"], ".3f"),
             t["status"]] for t in report["targets"]]
    return tabulate(rows, tablefmt=fmt_name, headers=["target (set for real dims)", "need", "measured median",
                                                      "[min, max]", "predicted", "verdict"])


def full_report(r: dict[str, Any]) -> str:
    c = r["config"]
    out = [f"shirg-bench [{r['dims']} dims: {r['model']}; {r['device']} {r['dtype']}; timer {c['timer']}; "
           f"{r['rounds_done']} interleaved rounds ({c['order']}, seed {c['seed']}) after {c['warmup']} warm-up of "
           f"every cell; {c['steps']} steps; figures are medians, ranges [min, max] over rounds]",
           stage_table(r), "",
           f"measured / predicted ms (cost model at these dims, profile {r['cost_model']['hardware']['name']})",
           predicted_stage_table(r), "", "ratios within each round", ratio_table(r)]
    if r["noisy_ratios"]:
        out.append(f"\n{len(r['noisy_ratios'])} ratio(s) NOISY (rounds disagree more than the effect): "
                   + "; ".join(r["noisy_ratios"]))
    kv = r.get("prefix_kv_bytes_by_dtype")
    if kv:
        out.append(f"\nprefix KV on {r['baseline']}'s prompt: auto {kv['auto'] / 2**20:.3f} MB, "
                   f"bf16 {kv['bf16'] / 2**20:.3f} MB, int8 {kv['int8'] / 2**20:.3f} MB")
    judged = ("verdicts: PASS/MISS when every round is on one side of the threshold, UNCLEAR when they straddle it"
              if r["real_dims"] else
              f"no verdicts: the targets are set for LaViDa-8B at real dims, these are {r['dims']} dims")
    out += ["", f"targets [{r['dims']} dims; {judged}]", target_table(r)]
    return "\n".join(out)
