"""``shirg-leaderboard``: lmms-eval output folders -> one honest table.

One row per (variant, LoRA checkpoint, non-default model_args); per task the headline metric with its own 95%
interval, CIDEr, and -- given ``--baseline`` -- the paired-bootstrap delta against the baseline over the same
documents. Missing numbers are shown as missing ("—" / empty CSV cell), never as 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from shirg_eval.report import bootstrap as bs
from shirg_eval.report.results import (
    TaskRun,
    latency_p50,
    load_task_runs,
    peak_memory,
    row_label,
    sort_key,
    visual_tokens,
)

# task-name prefix -> (headline metric, column label); unknown tasks fall back to exact match
HEADLINES = (("chartqa", "relaxed_overall", "relaxed acc %"), ("docvqa", "anls", "ANLS %"))
FALLBACK_HEADLINE = ("exact_match", "EM %")
MEM_KINDS = {"cuda_max_allocated": "GPU alloc", "cpu_peak_rss": "CPU RSS"}
MISSING = "—"

Key = tuple[str, "str | None", str]


class LeaderboardError(RuntimeError):
    """A leaderboard that cannot be built honestly (no runs, unknown baseline, mismatched documents)."""


def headline_for(task: str) -> tuple[str, str]:
    for prefix, metric, label in HEADLINES:
        if task.startswith(prefix):
            return metric, label
    return FALLBACK_HEADLINE


@dataclass
class Leaderboard:
    raw: pd.DataFrame  # numbers (NaN where missing): CSV and plots
    display: pd.DataFrame  # formatted strings: markdown / LaTeX / HTML
    tasks: list[str]
    headlines: dict[str, tuple[str, str]]
    baseline: str | None
    footnote: str
    runs: list[TaskRun]
    notes: list[str] = field(default_factory=list)


def resolve_baseline(spec: str, keys: Sequence[Key]) -> Key:
    """``VARIANT[@LORA]`` -> the row key; refuses when nothing or several rows match."""
    variant, _, lora = spec.partition("@")
    cands = [k for k in keys if k[0] == variant]
    if lora:
        cands = [k for k in cands if k[1] == lora] or [k for k in cands if k[1] and lora in k[1]]
    else:
        cands = [k for k in cands if k[1] is None] or cands
    if len(cands) > 1:  # prefer the run with default settings
        cands = [k for k in cands if not k[2]] or cands
    if len(cands) != 1:
        have = ", ".join(row_label(k) for k in keys)
        what = "matches several rows" if cands else "matches no row"
        raise LeaderboardError(f"baseline {spec!r} {what}; rows: {have}")
    return cands[0]


def _fmt(v: float, spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return format(round(float(v), 6) + 0.0, spec)


def _fmt_ci(est: float, lo: float, hi: float, sign: bool = False, mark: str = "") -> str:
    if math.isnan(est):
        return MISSING
    s = "+.1f" if sign else ".1f"
    if math.isnan(lo) or math.isnan(hi):
        return _fmt(est, s)
    return f"{_fmt(est, s)} [{_fmt(lo, s)}, {_fmt(hi, s)}]{mark}"


def _fmt_count(v: float) -> str:
    if math.isnan(v):
        return MISSING
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def _fmt_mem(gb: float, kind: str | None) -> str:
    if math.isnan(gb):
        return MISSING
    return f"{gb:.2f} GB" + (f" ({MEM_KINDS.get(kind, kind)})" if kind else "")


def _headline(run: TaskRun, metric: str, n_boot: int, seed: int) -> tuple[bs.Interval, bool]:
    """Headline value in % with its 95% CI; the bool says the CI is a normal approximation (no samples)."""
    vals = run.per_doc(metric)
    if vals:
        iv = bs.bootstrap_mean_ci([100 * v for v in vals.values()], n_boot=n_boot, seed=seed)
        return iv, False
    est = 100 * run.aggregate(metric)
    se = 100 * run.aggregate(f"{metric}_stderr")
    if math.isnan(se):
        return bs.Interval(est, math.nan, math.nan, 0, 0, "none"), False
    return bs.Interval(est, est - 1.96 * se, est + 1.96 * se, 0, 0, "normal"), True


def _cider_items(run: TaskRun) -> dict[str, Any]:
    items = {uid: bs.cider_item(v) for uid, v in run.per_doc_raw("cider").items()}
    return {uid: it for uid, it in items.items() if it is not None}


def _cider(run: TaskRun) -> float:
    """Corpus CIDEr x100, recomputed from samples (same scorer as the deltas); else the aggregated value."""
    items = _cider_items(run)
    if items:
        return 100 * bs.cider_score(list(items.values()))
    return 100 * run.aggregate("cider")


def _delta(base: TaskRun, run: TaskRun, metric: str, n_boot: int, seed: int) -> bs.Interval:
    names = (f"{base.name} ({base.task})", f"{run.name} ({run.task})")
    if base.samples is None or run.samples is None:
        return bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none")
    # the document sets are checked on all logged docs, before NaN metrics are dropped
    bs.align(dict.fromkeys(base.doc_ids()), dict.fromkeys(run.doc_ids()), *names)
    a, b = base.per_doc(metric), run.per_doc(metric)
    shared = sorted(set(a) & set(b))
    if not shared:
        return bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none")
    iv = bs.paired_bootstrap({i: a[i] for i in shared}, {i: b[i] for i in shared}, n_boot, seed, names=names)
    return bs.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high, iv.n, iv.n_boot, iv.method)


def _cider_delta(base: TaskRun, run: TaskRun, n_boot: int, seed: int) -> bs.Interval:
    a, b = _cider_items(base), _cider_items(run)
    shared = sorted(set(a) & set(b))
    if not shared:
        return bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none")
    iv = bs.paired_bootstrap_corpus(
        {i: a[i] for i in shared}, {i: b[i] for i in shared}, bs.cider_score, n_boot=n_boot, seed=seed
    )
    return bs.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high, iv.n, iv.n_boot, iv.method)


def build_leaderboard(
    runs: list[TaskRun],
    baseline: str | None = None,
    n_boot: int = 2000,
    n_boot_cider: int = 200,
    seed: int = 0,
) -> Leaderboard:
    if not runs:
        raise LeaderboardError("no lmms-eval results (*_results.json) found")
    rows: dict[Key, dict[str, TaskRun]] = {}
    for run in runs:
        rows.setdefault(run.key, {})[run.task] = run
    keys = sorted(rows, key=sort_key)
    tasks = sorted({run.task for run in runs})
    headlines = {t: headline_for(t) for t in tasks}
    base_key = resolve_baseline(baseline, keys) if baseline else None
    base = rows[base_key] if base_key else {}
    normal_ci = False
    raw_rows, disp_rows = [], []
    for key in keys:
        tr = rows[key]
        raw: dict[str, Any] = {"variant": key[0], "lora": key[1], "settings": key[2]}
        disp: dict[str, str] = {"variant": key[0], "lora": key[1] or "none", "settings": key[2] or "default"}
        vt = visual_tokens(list(tr.values()))
        raw["visual_tokens"], disp["visual tokens"] = vt, _fmt_count(vt)
        for t in tasks:
            metric, label = headlines[t]
            run = tr.get(t)
            hl = _headline(run, metric, n_boot, seed) if run else None
            iv, approx = hl if hl else (bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none"), False)
            normal_ci |= approx
            cider = _cider(run) if run else math.nan
            raw.update(
                {
                    f"{t}.{metric}": iv.estimate,
                    f"{t}.{metric}.ci_low": iv.low,
                    f"{t}.{metric}.ci_high": iv.high,
                }
            )
            raw[f"{t}.n"] = len(set(run.doc_ids())) if run and run.samples is not None else math.nan
            raw[f"{t}.cider"] = cider
            disp[f"{t} {label}"] = _fmt_ci(iv.estimate, iv.low, iv.high, mark="*" if approx else "")
            disp[f"{t} CIDEr"] = _fmt(cider)
            if base_key:
                b = base.get(t)
                d = _delta(b, run, metric, n_boot, seed) if (b and run) else None
                dc = _cider_delta(b, run, n_boot_cider, seed) if (b and run) else None
                nan_iv = bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none")
                d, dc = d or nan_iv, dc or nan_iv
                raw.update(
                    {f"{t}.delta": d.estimate, f"{t}.delta.ci_low": d.low, f"{t}.delta.ci_high": d.high}
                )
                raw.update(
                    {
                        f"{t}.cider_delta": dc.estimate,
                        f"{t}.cider_delta.ci_low": dc.low,
                        f"{t}.cider_delta.ci_high": dc.high,
                    }
                )
                is_base = key == base_key and run is not None
                disp[f"{t} Δ vs base"] = (
                    "(baseline)" if is_base else _fmt_ci(d.estimate, d.low, d.high, sign=True)
                )
                disp[f"{t} ΔCIDEr"] = (
                    "(baseline)" if is_base else _fmt_ci(dc.estimate, dc.low, dc.high, sign=True)
                )
        lat = latency_p50(list(tr.values()))
        raw["latency_p50_ms"], disp["latency p50 (ms)"] = lat, _fmt(lat)
        if base_key:
            common = sorted(set(tr) & set(base))
            ratio = (
                latency_p50([tr[t] for t in common]) / latency_p50([base[t] for t in common])
                if common
                else math.nan
            )
            raw["latency_ratio"] = ratio
            disp["latency ×base"] = MISSING if math.isnan(ratio) else f"{ratio:.2f}×"
        mem, kind = peak_memory(list(tr.values()))
        raw["peak_mem_gb"], raw["peak_mem_kind"] = mem, kind
        disp["peak mem"] = _fmt_mem(mem, kind)
        raw_rows.append(raw)
        disp_rows.append(disp)
    raw_df = pd.DataFrame(raw_rows)
    footnote = _footnote(raw_df, tasks, base_key, n_boot, n_boot_cider, seed, normal_ci)
    for t in tasks:  # counts print as integers, missing ones as empty
        raw_df[f"{t}.n"] = raw_df[f"{t}.n"].astype("Int64")
    return Leaderboard(
        raw=raw_df,
        display=pd.DataFrame(disp_rows),
        tasks=tasks,
        headlines=headlines,
        baseline=row_label(base_key) if base_key else None,
        footnote=footnote,
        runs=runs,
    )


def _footnote(
    raw: pd.DataFrame,
    tasks: list[str],
    base_key: Key | None,
    n_boot: int,
    n_boot_cider: int,
    seed: int,
    normal_ci: bool,
) -> str:
    ns = []
    for t in tasks:
        vals = sorted({int(v) for v in raw[f"{t}.n"] if not math.isnan(v)})
        ns.append(f"{t} n={'/'.join(map(str, vals)) if vals else '?'}")
    parts = [
        f"documents per task: {', '.join(ns)}",
        f"95% CIs: percentile bootstrap over documents ({n_boot} resamples, seed {seed})",
    ]
    if normal_ci:
        parts.append("* = normal approximation from lmms-eval stderr (no samples logged)")
    if base_key:
        parts.append(
            f"Δ = run − baseline {row_label(base_key)}, paired bootstrap over the same document ids; "
            f"CIDEr Δ recomputes corpus CIDEr-D per resample ({n_boot_cider} resamples)"
        )
    parts.append(
        "CIDEr ×100; latency = median per-sample ms without warm-up; GPU alloc = CUDA max allocated, "
        "CPU RSS = process peak RSS"
    )
    return "Note: " + "; ".join(parts) + "."


# ---- rendering ----------------------------------------------------------------------------------------

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "Δ": r"$\Delta$",
    "—": "--",
    "×": r"$\times$",
    "−": "-",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def render(lb: Leaderboard, fmt: str = "markdown") -> str:
    """The table (and footnote, except for CSV whose file stays machine-readable) as text."""
    if fmt == "csv":
        return lb.raw.round(4).to_csv(index=False, na_rep="")
    df = lb.display
    headers, rows = list(df.columns), df.values.tolist()
    if fmt == "markdown":
        table = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
        return f"{table}\n\n{lb.footnote}\n"
    if fmt == "latex":
        esc_rows = [[_latex_escape(c) for c in r] for r in rows]
        table = tabulate(
            esc_rows, headers=[_latex_escape(h) for h in headers], tablefmt="latex_raw", disable_numparse=True
        )
        return f"{table}\n{_latex_escape(lb.footnote)}\n"
    if fmt == "html":
        table = tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True)
        import html

        return f"{table}\n<p>{html.escape(lb.footnote)}</p>\n"
    raise ValueError(f"unknown format {fmt!r}")


# ---- CLI ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shirg-leaderboard", description=__doc__.splitlines()[0])
    p.add_argument(
        "dirs", nargs="+", help="lmms-eval output folders (searched at any depth) or results.json files"
    )
    p.add_argument("--baseline", help="VARIANT[@LORA] the deltas and latency ratios are relative to")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex", "html"])
    p.add_argument("--output", help="write the table here instead of stdout")
    p.add_argument("--plots", help="write PNG+SVG plots into this folder")
    p.add_argument("--report", help="write a self-contained report into this folder")
    p.add_argument("--report-format", default="md", choices=["md", "html"])
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--n-boot-cider",
        type=int,
        default=200,
        help="resamples for corpus CIDEr deltas, which recompute CIDEr each time (default 200)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def run_leaderboard(
    dirs: Sequence[str | Path],
    baseline: str | None = None,
    fmt: str = "markdown",
    output: str | Path | None = None,
    plots: str | Path | None = None,
    report: str | Path | None = None,
    report_format: str = "md",
    n_boot: int = 2000,
    n_boot_cider: int = 200,
    seed: int = 0,
) -> Leaderboard:
    """Everything the CLI does, callable (``shirg-sweep`` uses it). Raises :class:`LeaderboardError`."""
    runs = load_task_runs(dirs)
    try:
        lb = build_leaderboard(runs, baseline, n_boot=n_boot, n_boot_cider=n_boot_cider, seed=seed)
    except bs.DocSetMismatch as exc:
        raise LeaderboardError(str(exc)) from exc
    text = render(lb, fmt)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if fmt == "csv":
        print(lb.footnote, file=sys.stderr)
    plot_files: list[Path] = []
    if plots or report:
        from shirg_eval.report.plots import write_plots

        plot_dir = Path(plots) if plots else Path(report)  # type: ignore[arg-type]
        plot_files, notes = write_plots(lb, plot_dir)
        lb.notes.extend(notes)
        for note in notes:
            print(f"shirg-leaderboard: {note}", file=sys.stderr)
    if report:
        from shirg_eval.report.report import write_report

        path = write_report(lb, Path(report), plot_files, fmt=report_format)
        print(f"shirg-leaderboard: report written to {path}", file=sys.stderr)
    return lb


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_leaderboard(
            args.dirs,
            args.baseline,
            args.format,
            args.output,
            args.plots,
            args.report,
            args.report_format,
            args.n_boot,
            args.n_boot_cider,
            args.seed,
        )
    except LeaderboardError as exc:
        print(f"shirg-leaderboard: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
