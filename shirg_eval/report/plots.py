"""Leaderboard plots (PNG + SVG, matplotlib Agg), all per task: accuracy vs latency, accuracy vs visual tokens,
peak memory, and a gallery of the ``selection_*.png`` overlays found in the run folders.

Rows are told apart by a legend (one colour/marker per row, outside the axes), never by text placed next to the
points, so labels cannot overlap however close the points are. To add a plot, write a function that takes the
:class:`Leaderboard` and an output folder and returns the files it wrote, and list it in :func:`write_plots`;
:func:`scatter_plot` draws any two numeric per-task columns of ``lb.raw`` (``join_methods`` joins the rows of one
method -- :func:`row_methods`, the same curves as :func:`accuracy_vs_tokens_by_method` -- with a line).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: sweeps run on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from shirg_eval.report.table import Leaderboard

GALLERY_PER_ROW = 4
MARKERS = "osD^vP*Xhp<>"
TITLE_WIDTH = 34  # characters per gallery-title line at fontsize 7 in a 3-inch panel
TICK_WIDTH = 22  # characters per bar-label line at fontsize 7 under a 1.6-inch group of bars


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _style(i: int) -> dict[str, object]:
    return {"color": plt.get_cmap("tab10")(i % 10), "marker": MARKERS[i % len(MARKERS)]}


def scatter_plot(
    lb: Leaderboard, task: str, xcol: str, xlabel: str, stem: str, out: Path, join_methods: bool = False
) -> list[Path]:
    """Headline metric (with its 95% CI) against ``lb.raw[xcol]`` for ``task``; one legend entry per row."""
    metric, label = lb.headlines[task]
    df = lb.raw
    methods = row_methods(lb)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    lines: dict[str, list[tuple[float, float]]] = {}
    plotted = 0
    for i, r in enumerate(df.to_dict("records")):
        x, y = r.get(xcol), r.get(f"{task}.{metric}")
        if _missing(x) or _missing(y):
            continue
        lo, hi = r[f"{task}.{metric}.ci_low"], r[f"{task}.{metric}.ci_high"]
        yerr = None if _missing(lo) or _missing(hi) else [[y - lo], [hi - y]]
        ax.errorbar([x], [y], yerr=yerr, fmt=str(_style(i)["marker"]), color=_style(i)["color"], capsize=3,
                    label=r["label"])
        if join_methods:
            lines.setdefault(methods[i], []).append((x, y))
        plotted += 1
    for points in lines.values():
        if len(points) > 1:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, color="0.6", linewidth=0.8, zorder=0)
    if not plotted:
        plt.close(fig)
        return []
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{label} (95% CI)")
    ax.set_title(f"{task}: {label} vs {xlabel}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, borderaxespad=0.0)
    return _save(fig, out, stem)


# model_args that set a row's token budget: rows differing only in these lie on one method's curve.
BUDGET_ARGS = frozenset({"k", "scaffold"})


def method_of(variant: str, settings: str, lora: str | None = None) -> str:
    """The curve a leaderboard row belongs to: its variant and settings without the budget arguments."""
    from shirg_eval.report.results import parse_model_args

    rest = {k: v for k, v in parse_model_args(settings).items() if k not in BUDGET_ARGS}
    label = variant + (f"[{','.join(f'{k}={v}' for k, v in sorted(rest.items()))}]" if rest else "")
    return label + (f"@{lora}" if lora else "")


def row_methods(lb: Leaderboard) -> list[str]:
    """The curve of every row of ``lb.raw``: :func:`method_of`, plus ``{the base components that vary}`` when rows
    differ in their base (another checkpoint, dtype, KV dtype or kernel is another curve, as it is another row)."""
    from shirg_eval.report.rows import RowKey, varying_base

    keys = [RowKey(str(r["variant"]), r["lora"] if isinstance(r.get("lora"), str) else None, r.get("settings") or "",
                   r.get("base") or "") for r in lb.raw.to_dict("records")]
    differing, _ = varying_base(keys)
    return [method_of(key.variant, key.settings, key.lora) + (f" {{{differing[key]}}}" if differing[key] else "")
            for key in keys]


def method_curves(lb: Leaderboard, task: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{method: [(tokens, headline, ci_low, ci_high), ...]}`` sorted by tokens; rows without numbers skipped."""
    metric, _ = lb.headlines[task]
    df = lb.raw
    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    for i, method in enumerate(row_methods(lb)):
        x, y = float(df[f"{task}.visual_tokens"].iloc[i]), float(df[f"{task}.{metric}"].iloc[i])
        if math.isnan(x) or math.isnan(y):
            continue
        lo, hi = df[f"{task}.{metric}.ci_low"].iloc[i], df[f"{task}.{metric}.ci_high"].iloc[i]
        curves.setdefault(method, []).append((x, y, float(lo), float(hi)))
    return {name: sorted(points) for name, points in sorted(curves.items())}


def accuracy_vs_tokens_by_method(lb: Leaderboard, task: str, out: Path) -> list[Path]:
    """One plot per task: headline metric (95% CI) against the LM-side visual tokens, one curve per method.

    Rows of the same variant, settings and base at different budgets (``k``, ``scaffold``) form a curve
    (:func:`row_methods`); a method run at one budget (e.g. ``lavida``, ``lavida_384``) is a single marker.
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


def memory_plot(lb: Leaderboard, out: Path) -> list[Path]:
    """Peak memory per row, one bar per task (hatched: CPU RSS, plain: GPU allocated)."""
    df = lb.raw
    tasks = [t for t in lb.tasks if df[f"{t}.peak_mem_gb"].notna().any()]
    if not tasks:
        return []
    n_rows = len(df)
    # each group of bars is >= 1.5 inch wide, room for TICK_WIDTH characters at fontsize 7
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * n_rows + 1), 4.2))
    width = 0.8 / len(tasks)
    for j, t in enumerate(tasks):
        xs = [i + (j - (len(tasks) - 1) / 2) * width for i in range(n_rows)]
        vals = [0.0 if _missing(v) else v for v in df[f"{t}.peak_mem_gb"]]
        hatch = ["//" if k == "cpu_peak_rss" else "" for k in df[f"{t}.peak_mem_kind"]]
        bars = ax.bar(xs, vals, width=width, label=t, color=plt.get_cmap("tab10")(j))
        for bar, h, v in zip(bars, hatch, df[f"{t}.peak_mem_gb"], strict=True):
            bar.set_hatch(h)
            if _missing(v):
                bar.set_visible(False)
    ticks = ["\n".join(textwrap.wrap(str(label), TICK_WIDTH)) for label in df["label"]]
    ax.set_xticks(range(n_rows), ticks, fontsize=7)
    ax.set_ylabel("peak memory (GB)")
    ax.set_title("peak memory per task (hatched: CPU RSS of the process, plain: GPU allocated)")
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, out, "peak_memory")


def find_selection_images(lb: Leaderboard) -> dict[str, list[Path]]:
    """``selection_*.png`` next to each run's results file or in its cell folder, per row label."""
    found: dict[str, set[Path]] = {}
    for run in lb.runs:
        folders = {run.results_path.parent, run.results_path.parent.parent}
        imgs = {p for f in folders for p in f.glob("selection_*.png")}
        if imgs:
            found.setdefault(lb.labels.get(run.key, run.name), set()).update(imgs)
    return {name: sorted(paths) for name, paths in found.items()}


def _panel_title(row: str, image: Path) -> str:
    """Row label and image name, wrapped to the panel width so neighbouring titles never touch."""
    stem = image.stem.removeprefix("selection_")
    variant = row.split("[", 1)[0].split("@", 1)[0].split(" ", 1)[0]
    stem = stem.removeprefix(f"{variant}_")
    lines = textwrap.wrap(row, TITLE_WIDTH) + textwrap.wrap(stem, TITLE_WIDTH)
    return "\n".join(lines)


def gallery_plot(lb: Leaderboard, out: Path) -> list[Path]:
    images = find_selection_images(lb)
    if not images:
        return []
    rows = len(images)
    fig, axes = plt.subplots(
        rows, GALLERY_PER_ROW, figsize=(3 * GALLERY_PER_ROW, 3.6 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, paths) in enumerate(sorted(images.items())):
        for j, p in enumerate(paths[:GALLERY_PER_ROW]):
            axes[i][j].imshow(plt.imread(p))
            axes[i][j].set_title(_panel_title(name, p), fontsize=7)
    return _save(fig, out, "selection_gallery")


def write_plots(lb: Leaderboard, out: Path) -> tuple[list[Path], list[str]]:
    """Write all plots into ``out``; returns the files written and notes about skipped plots."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    notes: list[str] = []
    for task in lb.tasks:
        files += scatter_plot(
            lb, task, f"{task}.latency_p50_ms", f"{task} latency p50 (ms)", f"accuracy_vs_latency_{task}", out
        )
        files += scatter_plot(
            lb, task, f"{task}.visual_tokens", f"{task} visual tokens (mean)", f"accuracy_vs_tokens_{task}", out,
            join_methods=True,
        )
        files += accuracy_vs_tokens_by_method(lb, task, out)
    mem = memory_plot(lb, out)
    if not mem:
        notes.append("no peak-memory numbers; memory plot skipped")
    files += mem
    gallery = gallery_plot(lb, out)
    if not gallery:
        notes.append("no selection_*.png overlays in the run folders; selection gallery skipped")
    files += gallery
    return files, notes
