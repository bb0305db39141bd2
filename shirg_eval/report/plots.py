"""Leaderboard plots (PNG + SVG, matplotlib Agg): accuracy vs latency, peak memory, accuracy vs visual tokens,
and a gallery of ``selection_*.png`` overlays found in the run folders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: sweeps run on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from shirg_eval.report.results import row_label  # noqa: E402

if TYPE_CHECKING:
    from shirg_eval.report.leaderboard import Leaderboard

GALLERY_PER_ROW = 4


def _labels(lb: Leaderboard) -> list[str]:
    return [row_label((r.variant, r.lora, r.settings)) for r in lb.raw.itertuples()]


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _scatter(lb: Leaderboard, task: str, xcol: str, xlabel: str, stem: str, out: Path) -> list[Path]:
    metric, label = lb.headlines[task]
    df = lb.raw
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = 0
    for name, (_, r) in zip(_labels(lb), df.iterrows(), strict=True):
        x, y = r[xcol], r[f"{task}.{metric}"]
        if any(isinstance(v, float) and math.isnan(v) for v in (x, y)):
            continue
        lo, hi = r[f"{task}.{metric}.ci_low"], r[f"{task}.{metric}.ci_high"]
        yerr = None if math.isnan(lo) else [[y - lo], [hi - y]]
        ax.errorbar([x], [y], yerr=yerr, fmt="o", capsize=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        plotted += 1
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{task} {label} (95% CI)")
    ax.set_title(f"{task}: {label} vs {xlabel}")
    ax.grid(alpha=0.3)
    if not plotted:
        plt.close(fig)
        return []
    return _save(fig, out, stem)


# model_args that set a row's token budget: rows differing only in these lie on one method's curve.
BUDGET_ARGS = frozenset({"k", "scaffold"})


def method_of(variant: str, settings: str, lora: str | None = None) -> str:
    """The curve a leaderboard row belongs to: its variant and settings without the budget arguments."""
    from shirg_eval.report.results import parse_model_args

    rest = {k: v for k, v in parse_model_args(settings).items() if k not in BUDGET_ARGS}
    label = variant + (f"[{','.join(f'{k}={v}' for k, v in sorted(rest.items()))}]" if rest else "")
    return label + (f"@{lora}" if lora else "")


def method_curves(lb: Leaderboard, task: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{method: [(tokens, headline, ci_low, ci_high), ...]}`` sorted by tokens; rows without numbers skipped."""
    metric, _ = lb.headlines[task]
    df = lb.raw
    tokens_col = f"{task}.visual_tokens" if f"{task}.visual_tokens" in df.columns else "visual_tokens"
    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    for i in range(len(df)):
        x, y = float(df[tokens_col].iloc[i]), float(df[f"{task}.{metric}"].iloc[i])
        if math.isnan(x) or math.isnan(y):
            continue
        lo, hi = df[f"{task}.{metric}.ci_low"].iloc[i], df[f"{task}.{metric}.ci_high"].iloc[i]
        lora = df["lora"].iloc[i]
        key = method_of(df["variant"].iloc[i], df["settings"].iloc[i] or "", lora if isinstance(lora, str) else None)
        curves.setdefault(key, []).append((x, y, float(lo), float(hi)))
    return {name: sorted(points) for name, points in sorted(curves.items())}


def accuracy_vs_tokens_by_method(lb: Leaderboard, task: str, out: Path) -> list[Path]:
    """One plot per task: headline metric (95% CI) against the LM-side visual tokens, one curve per method.

    Rows of the same variant at different budgets (``k``, ``scaffold``) form a curve; a method run at one budget
    (e.g. ``lavida``, ``lavida_384``) is a single marker.
    """
    _, label = lb.headlines[task]
    curves = method_curves(lb, task)
    if not curves:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours; markers also vary, so >10 curves stay apart
    for i, (name, points) in enumerate(curves.items()):
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        yerr = [[max(p[1] - p[2], 0.0) if not math.isnan(p[2]) else 0.0 for p in points],
                [max(p[3] - p[1], 0.0) if not math.isnan(p[3]) else 0.0 for p in points]]
        ax.errorbar(xs, ys, yerr=yerr, marker="osD^vP*Xh<>"[i % 11], linestyle="-" if len(points) > 1 else "none",
                    color=colors[i % len(colors)], capsize=3, label=name, markersize=4)
    ax.set_xlabel("visual tokens the LM receives (mean)")
    ax.set_ylabel(f"{task} {label} (95% CI)")
    ax.set_title(f"{task}: {label} vs visual tokens, per method")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, out, f"accuracy_vs_tokens_by_method_{task}")


def _memory(lb: Leaderboard, out: Path) -> list[Path]:
    df = lb.raw
    names = _labels(lb)
    keep = [i for i, v in enumerate(df["peak_mem_gb"]) if not math.isnan(v)]
    if not keep:
        return []
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(keep)), 4))
    kinds = [df["peak_mem_kind"].iloc[i] for i in keep]
    colors = ["tab:orange" if k == "cpu_peak_rss" else "tab:blue" for k in kinds]
    ax.bar([names[i] for i in keep], [df["peak_mem_gb"].iloc[i] for i in keep], color=colors)
    ax.set_ylabel("peak memory (GB)")
    ax.set_title("peak memory (blue: GPU allocated, orange: CPU RSS)")
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    return _save(fig, out, "peak_memory")


def find_selection_images(lb: Leaderboard) -> dict[str, list[Path]]:
    """``selection_*.png`` next to each run's results file or in its cell folder, per row label."""
    found: dict[str, list[Path]] = {}
    for run in lb.runs:
        folders = {run.results_path.parent, run.results_path.parent.parent}
        imgs = sorted({p for f in folders for p in f.glob("selection_*.png")})
        if imgs:
            found.setdefault(run.name, [])
            found[run.name] = sorted(set(found[run.name]) | set(imgs))
    return found


def _gallery(lb: Leaderboard, out: Path) -> list[Path]:
    images = find_selection_images(lb)
    if not images:
        return []
    rows = len(images)
    fig, axes = plt.subplots(rows, GALLERY_PER_ROW, figsize=(3 * GALLERY_PER_ROW, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, paths) in enumerate(sorted(images.items())):
        for j, p in enumerate(paths[:GALLERY_PER_ROW]):
            axes[i][j].imshow(plt.imread(p))
            axes[i][j].set_title(f"{name}\n{p.stem}", fontsize=7)
    return _save(fig, out, "selection_gallery")


def write_plots(lb: Leaderboard, out: Path) -> tuple[list[Path], list[str]]:
    """Write all plots into ``out``; returns the files written and notes about skipped plots."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    notes: list[str] = []
    for task in lb.tasks:
        files += _scatter(lb, task, "latency_p50_ms", "latency p50 (ms)", f"accuracy_vs_latency_{task}", out)
        files += _scatter(
            lb, task, "visual_tokens", "visual tokens (mean)", f"accuracy_vs_tokens_{task}", out
        )
        files += accuracy_vs_tokens_by_method(lb, task, out)
    mem = _memory(lb, out)
    if not mem:
        notes.append("no peak-memory numbers; memory plot skipped")
    files += mem
    gallery = _gallery(lb, out)
    if not gallery:
        notes.append("no selection_*.png overlays in the run folders; selection gallery skipped")
    files += gallery
    return files, notes
