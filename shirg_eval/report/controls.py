"""Matched-budget comparisons: each sweep cell that declares ``controls: CELL`` against the cell it controls.

shirg-sweep writes ``cell.json`` ({cell, controls, ...}) into every cell folder; :mod:`results` reads it into
``TaskRun.cell`` / ``TaskRun.controls``. Here every (reference, control) pair gets, per task, both rows' mean
visual-token counts, their ratio, "matched" only when the two means are equal, and the paired delta
reference − control of the headline metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from shirg_eval.metrics import bootstrap as bs
from shirg_eval.report import render as rd
from shirg_eval.report.efficiency import visual_tokens
from shirg_eval.report.results import TaskRun
from shirg_eval.report.rows import RowKey, sort_key

# (base run, run, metric, (base name, run name)) -> run - base, x100, paired over the same documents
DeltaFn = Callable[[TaskRun, TaskRun, str, tuple[str, str]], bs.Interval]


def token_ratio(tokens: float, ref_tokens: float) -> tuple[float, bool]:
    """(tokens / reference tokens, matched budget): matched only when the two mean counts are equal."""
    if math.isnan(tokens) or math.isnan(ref_tokens) or ref_tokens == 0:
        return math.nan, False
    return tokens / ref_tokens, abs(tokens - ref_tokens) <= 1e-9 * max(1.0, abs(ref_tokens))


def control_pairs(
    rows: dict[RowKey, dict[str, TaskRun]],
    keys: Sequence[RowKey],
    labels: dict[RowKey, str],
    headlines: dict[str, tuple[str, str]],
    delta: DeltaFn,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(numbers, display strings, notes) of every reference-vs-control pair, one row per task both ran."""
    by_cell: dict[str, set[RowKey]] = {}
    for key in keys:
        for run in rows[key].values():
            if run.cell:
                by_cell.setdefault(run.cell, set()).add(key)
    raw_rows: list[dict[str, Any]] = []
    disp_rows: list[dict[str, str]] = []
    notes: list[str] = []
    for key in keys:
        for ref_cell in sorted({run.controls for run in rows[key].values() if run.controls}):
            refs = sorted(by_cell.get(ref_cell, ()), key=sort_key)
            if not refs:
                notes.append(f"{labels[key]} controls cell {ref_cell!r}, which has no runs here")
            for ref in refs:
                for t in sorted(set(rows[key]) & set(rows[ref])):
                    ctrl_run, ref_run = rows[key][t], rows[ref][t]
                    metric, mlabel = headlines[t]
                    ref_tok, ctrl_tok = visual_tokens(ref_run), visual_tokens(ctrl_run)
                    ratio, matched = token_ratio(ref_tok, ctrl_tok)
                    d = delta(ctrl_run, ref_run, metric, (f"{labels[key]} ({t})", f"{labels[ref]} ({t})"))
                    raw_rows.append({
                        "reference": labels[ref], "control": labels[key], "task": t, "metric": metric,
                        "reference_tokens": ref_tok, "control_tokens": ctrl_tok, "tokens_ratio": ratio,
                        "matched_budget": matched, "delta": d.estimate, "delta.ci_low": d.low,
                        "delta.ci_high": d.high,
                    })
                    shown = rd.fmt_ci(d.estimate, d.low, d.high, sign=True)
                    disp_rows.append({
                        "reference": labels[ref],
                        "control": labels[key],
                        "task": t,
                        "visual tokens (ref / control)": f"{rd.fmt_count(ref_tok)} / {rd.fmt_count(ctrl_tok)}",
                        "tokens ref/control": rd.fmt_ratio(ratio),
                        "budget": "matched" if matched else "NOT matched",
                        "Δ (ref − control)": shown if shown == rd.MISSING else f"{shown} {mlabel}",
                    })
    return pd.DataFrame(raw_rows), pd.DataFrame(disp_rows), notes
