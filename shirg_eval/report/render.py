"""Cell formatting and table rendering (markdown, CSV, LaTeX, HTML) for :mod:`shirg_eval.report.table`.

Missing numbers print as "—" (an empty CSV cell), never as 0.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

if TYPE_CHECKING:
    from shirg_eval.report.table import Leaderboard

MISSING = "—"
MEM_KINDS = {"cuda_max_allocated": "GPU alloc", "cpu_peak_rss": "CPU RSS"}


def is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: float | None, spec: str = ".1f") -> str:
    if is_missing(v):
        return MISSING
    return format(round(float(v), 6) + 0.0, spec)  # + 0.0: no "-0.0"


def fmt_ci(est: float, lo: float, hi: float, sign: bool = False, mark: str = "") -> str:
    if is_missing(est):
        return MISSING
    s = "+.1f" if sign else ".1f"
    if is_missing(lo) or is_missing(hi):
        return fmt(est, s)
    return f"{fmt(est, s)} [{fmt(lo, s)}, {fmt(hi, s)}]{mark}"


def fmt_count(v: float) -> str:
    if is_missing(v):
        return MISSING
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def fmt_mem(gb: float, kind: str | None) -> str:
    if is_missing(gb):
        return MISSING
    return f"{gb:.2f} GB" + (f" ({MEM_KINDS.get(kind, kind)})" if kind else "")


def fmt_ratio(ratio: float, mark: str = "") -> str:
    return MISSING if is_missing(ratio) else f"{ratio:.2f}×{mark}"


def fmt_token_ratio(ratio: float, matched: bool) -> str:
    """Token ratio beside a delta; "matched budget" only when the two mean token counts are equal."""
    if is_missing(ratio):
        return MISSING
    return f"{ratio:.2f}× (matched budget)" if matched else f"{ratio:.2f}×"


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
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _table(df: pd.DataFrame, fmt_name: str) -> str:
    headers, rows = list(df.columns), df.values.tolist()
    if fmt_name == "markdown":
        return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
    if fmt_name == "latex":
        esc_rows = [[latex_escape(c) for c in r] for r in rows]
        return tabulate(
            esc_rows, headers=[latex_escape(h) for h in headers], tablefmt="latex_raw", disable_numparse=True
        )
    if fmt_name == "html":
        return tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True)
    raise ValueError(f"unknown format {fmt_name!r}")


def render(lb: Leaderboard, fmt_name: str = "markdown") -> str:
    """The table, its footnote and the matched-budget table (CSV: the main table only, machine-readable)."""
    if fmt_name == "csv":
        return lb.raw.round(4).to_csv(index=False, na_rep="")
    if fmt_name not in ("markdown", "latex", "html"):
        raise ValueError(f"unknown format {fmt_name!r}")
    # (is a table, text) in reading order; prose is escaped per format, tables are rendered by tabulate
    parts = [(True, _table(lb.display, fmt_name)), (False, lb.footnote)]
    if not lb.pairs_display.empty:
        parts += [(False, lb.pairs_title), (True, _table(lb.pairs_display, fmt_name))]
    if fmt_name == "markdown":
        return "\n\n".join(text for _, text in parts) + "\n"
    if fmt_name == "latex":
        return "\n".join(text if table else latex_escape(text) for table, text in parts) + "\n"
    return "\n".join(text if table else f"<p>{html.escape(text)}</p>" for table, text in parts) + "\n"
