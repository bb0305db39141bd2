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
    mem = _memory(lb, out)
    if not mem:
        notes.append("no peak-memory numbers; memory plot skipped")
    files += mem
    gallery = _gallery(lb, out)
    if not gallery:
        notes.append("no selection_*.png overlays in the run folders; selection gallery skipped")
    files += gallery
    return files, notes
