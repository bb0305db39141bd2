"""Publishing a leaderboard: read the run folders, build the table, write it with its plots and report."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shirg_eval.metrics import bootstrap as bs
from shirg_eval.report.render import render
from shirg_eval.report.results import load_task_runs
from shirg_eval.report.table import Leaderboard, LeaderboardError, build_leaderboard


@dataclass(frozen=True)
class LeaderboardArgs:
    """What ``shirg-leaderboard`` (and ``shirg-sweep``) ask for."""

    dirs: Sequence[str | Path]  # lmms-eval output folders (searched at any depth) or results.json files
    baseline: str | None = None  # VARIANT[@LORA] or a full row label: deltas and ratios are relative to it
    fmt: str = "markdown"  # markdown | csv | latex | html
    output: str | Path | None = None  # the table's file; stdout when None
    plots: str | Path | None = None  # folder for PNG+SVG plots
    report: str | Path | None = None  # folder for a self-contained report
    report_format: str = "md"
    n_boot: int = 2000
    n_boot_cider: int = 200  # corpus CIDEr deltas recompute CIDEr per resample
    seed: int = 0


def run_leaderboard(args: LeaderboardArgs) -> Leaderboard:
    """Everything ``shirg-leaderboard`` does. Raises :class:`LeaderboardError`."""
    missing = [str(d) for d in args.dirs if not Path(d).exists()]
    if missing:
        raise LeaderboardError(f"{', '.join(missing)}: no such file or folder (give the --output_path of "
                               "lmms_eval runs, or a sweep's output_root)")
    runs = load_task_runs(args.dirs)
    try:
        lb = build_leaderboard(runs, args.baseline, n_boot=args.n_boot, n_boot_cider=args.n_boot_cider,
                               seed=args.seed)
    except bs.DocSetMismatch as exc:
        raise LeaderboardError(str(exc)) from exc
    text = render(lb, args.fmt)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.fmt == "csv":
        print(lb.footnote, file=sys.stderr)
    for note in lb.notes:
        print(f"shirg-leaderboard: {note}", file=sys.stderr)
    plot_files: list[Path] = []
    if args.plots or args.report:
        from shirg_eval.report.plots import write_plots

        plot_dir = Path(args.plots or args.report)  # type: ignore[arg-type]
        plot_files, notes = write_plots(lb, plot_dir)
        lb.notes.extend(notes)
        for note in notes:
            print(f"shirg-leaderboard: {note}", file=sys.stderr)
    if args.report:
        from shirg_eval.report.report import write_report

        path = write_report(lb, Path(args.report), plot_files, fmt=args.report_format)
        print(f"shirg-leaderboard: report written to {path}", file=sys.stderr)
    return lb
