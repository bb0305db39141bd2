"""The leaderboard: task runs -> one honest table (:class:`Leaderboard`, built by :func:`build_leaderboard`).

One row per (variant, LoRA checkpoint, non-default model_args, base: checkpoint + dtype + KV dtype + attention
kernel). Every column is per task and recomputable from that task's samples: the headline metric with its 95%
interval, CIDEr, visual tokens, latency p50 and peak memory; given ``--baseline``, the paired-bootstrap delta
against the baseline over the same documents, the token ratio beside it ("matched budget" only when the mean
token counts are equal) and the latency ratio. Cells of a shirg-sweep that declare ``controls:`` get a second
table: each reference against its same-budget controls. Missing numbers are shown as missing, never as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from shirg_eval.metrics import bootstrap as bs
from shirg_eval.report import render as rd
from shirg_eval.report.controls import control_pairs, token_ratio
from shirg_eval.report.efficiency import (
    forward_passes,
    latency_p50,
    latency_ratio,
    peak_memory,
    visual_tokens,
)
from shirg_eval.report.results import TaskRun
from shirg_eval.report.rows import RowKey, row_labels, sort_key, varying_base

# task-name prefix -> (headline metric, column label), first match wins; unknown tasks fall back to exact match.
# lmms-eval's own textvqa_val reports TextVQA accuracy as "exact_match"; our textvqa_200 names it vqa_accuracy.
HEADLINES = (
    ("chartqa", "relaxed_overall", "relaxed acc %"),
    ("docvqa", "anls", "ANLS %"),
    ("infovqa", "anls", "ANLS %"),
    ("textvqa_val", "exact_match", "VQA acc % (lmms-eval exact_match)"),
    ("textvqa", "vqa_accuracy", "VQA acc %"),
    ("ocrbench_200", "ocrbench_mean_score", "OCRBench score %"),
    ("ocrbench", "ocrbench_accuracy", "OCRBench acc % (lmms-eval: correct / 1000)"),
)
# columns a task may not log (lmms-eval's own tasks have no CIDEr; without the side file, no efficiency)
OPTIONAL_COLUMNS = (("cider", "CIDEr"), ("visual_tokens", "visual tokens"), ("latency_p50_ms", "latency"),
                    ("peak_mem_gb", "peak memory"))
FALLBACK_HEADLINE = ("exact_match", "EM %")
NAN_INTERVAL = bs.Interval(math.nan, math.nan, math.nan, 0, 0, "none")


class LeaderboardError(RuntimeError):
    """A leaderboard that cannot be built honestly (no runs, unknown baseline, mismatched documents)."""


def headline_for(task: str) -> tuple[str, str]:
    for prefix, metric, label in HEADLINES:
        if task.startswith(prefix):
            return metric, label
    return FALLBACK_HEADLINE


@dataclass
class Leaderboard:
    raw: pd.DataFrame  # numbers (NaN where missing): CSV and plots; ``label`` names the row
    display: pd.DataFrame  # formatted strings: markdown / LaTeX / HTML
    tasks: list[str]
    headlines: dict[str, tuple[str, str]]
    baseline: str | None
    footnote: str
    runs: list[TaskRun]
    labels: dict[RowKey, str] = field(default_factory=dict)
    pairs_raw: pd.DataFrame = field(default_factory=pd.DataFrame)  # reference vs control, per task
    pairs_display: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairs_title: str = ""
    notes: list[str] = field(default_factory=list)


# ---- row identity -------------------------------------------------------------------------------------


def resolve_baseline(spec: str, keys: Sequence[RowKey], labels: dict[RowKey, str] | None = None) -> RowKey:
    """A row label, or ``VARIANT[@LORA]`` -> the row key; refuses when nothing or several rows match."""
    labels = labels or row_labels(keys)
    exact = [k for k in keys if labels[k] == spec]
    if len(exact) == 1:
        return exact[0]
    variant, _, lora = spec.partition("@")
    cands = [k for k in keys if k.variant == variant]
    if lora:
        cands = [k for k in cands if k.lora == lora] or [k for k in cands if k.lora and lora in k.lora]
    else:
        cands = [k for k in cands if k.lora is None] or cands
    if len(cands) > 1:  # prefer the run with default settings
        cands = [k for k in cands if not k.settings] or cands
    if len(cands) != 1:
        have = "; ".join(labels[k] for k in keys)
        what = "matches several rows (pass one row's full label)" if cands else "matches no row"
        raise LeaderboardError(f"baseline {spec!r} {what}; rows: {have}")
    return cands[0]


# ---- per-task numbers ---------------------------------------------------------------------------------


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


def _delta(base: TaskRun, run: TaskRun, metric: str, n_boot: int, seed: int, names: tuple[str, str]) -> bs.Interval:
    """``run - base`` of a per-document metric (x100), paired over the same documents."""
    if base.samples is None or run.samples is None:
        return NAN_INTERVAL
    # the document sets are checked on all logged docs, before NaN metrics are dropped
    bs.align(dict.fromkeys(base.doc_ids()), dict.fromkeys(run.doc_ids()), *names)
    a, b = base.per_doc(metric), run.per_doc(metric)
    shared = sorted(set(a) & set(b))
    if not shared:
        return NAN_INTERVAL
    iv = bs.paired_bootstrap({i: a[i] for i in shared}, {i: b[i] for i in shared}, n_boot, seed, names=names)
    return bs.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high, iv.n, iv.n_boot, iv.method)


def _cider_delta(base: TaskRun, run: TaskRun, n_boot: int, seed: int) -> bs.Interval:
    a, b = _cider_items(base), _cider_items(run)
    shared = sorted(set(a) & set(b))
    if not shared:
        return NAN_INTERVAL
    iv = bs.paired_bootstrap_corpus(
        {i: a[i] for i in shared}, {i: b[i] for i in shared}, bs.cider_score, n_boot=n_boot, seed=seed
    )
    return bs.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high, iv.n, iv.n_boot, iv.method)


def _put_interval(raw: dict[str, Any], prefix: str, iv: bs.Interval) -> None:
    raw.update({prefix: iv.estimate, f"{prefix}.ci_low": iv.low, f"{prefix}.ci_high": iv.high})


# ---- the table ----------------------------------------------------------------------------------------


@dataclass
class _Flags:
    normal_ci: bool = False
    partial_ratio: bool = False
    side_file_tasks: set[str] = field(default_factory=set)  # efficiency joined from the side file (by doc_id)


def _task_columns(
    t: str,
    names: tuple[str, str],
    run: TaskRun | None,
    base: TaskRun | None,
    is_base: bool,
    with_base: bool,
    opts: dict[str, Any],
    flags: _Flags,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw numbers and display strings of one row's columns for task ``t``."""
    metric, mlabel = opts["headlines"][t]
    raw: dict[str, Any] = {}
    disp: dict[str, str] = {}
    tokens = visual_tokens(run) if run else math.nan
    raw[f"{t}.visual_tokens"], disp[f"{t} tokens"] = tokens, rd.fmt_count(tokens)
    iv, approx = _headline(run, metric, opts["n_boot"], opts["seed"]) if run else (NAN_INTERVAL, False)
    flags.normal_ci |= approx
    _put_interval(raw, f"{t}.{metric}", iv)
    raw[f"{t}.n"] = len(set(run.doc_ids())) if run and run.samples is not None else math.nan
    cider = _cider(run) if run else math.nan
    raw[f"{t}.cider"] = cider
    disp[f"{t} {mlabel}"] = rd.fmt_ci(iv.estimate, iv.low, iv.high, mark="*" if approx else "")
    disp[f"{t} CIDEr"] = rd.fmt(cider)
    both = run is not None and base is not None
    if with_base:
        ratio, matched = token_ratio(tokens, visual_tokens(base)) if both else (math.nan, False)
        d = _delta(base, run, metric, opts["n_boot"], opts["seed"], names) if both else NAN_INTERVAL
        dc = _cider_delta(base, run, opts["n_boot_cider"], opts["seed"]) if both else NAN_INTERVAL
        raw[f"{t}.tokens_ratio"], raw[f"{t}.matched_budget"] = ratio, (matched if both else None)
        _put_interval(raw, f"{t}.delta", d)
        _put_interval(raw, f"{t}.cider_delta", dc)
        baseline_mark = "(baseline)" if is_base and run is not None else None
        disp[f"{t} tokens ×base"] = baseline_mark or rd.fmt_token_ratio(ratio, matched)
        disp[f"{t} Δ vs base"] = baseline_mark or rd.fmt_ci(d.estimate, d.low, d.high, sign=True)
        disp[f"{t} ΔCIDEr"] = baseline_mark or rd.fmt_ci(dc.estimate, dc.low, dc.high, sign=True)
    p50 = latency_p50(run) if run else math.nan
    raw[f"{t}.latency_p50_ms"], disp[f"{t} p50 ms"] = p50, rd.fmt(p50)
    if with_base:
        lat_ratio, full = latency_ratio(run, base) if both else (math.nan, True)
        flags.partial_ratio |= not full
        raw[f"{t}.latency_ratio"] = lat_ratio
        disp[f"{t} latency ×base"] = rd.fmt_ratio(lat_ratio, "" if full else "†")
    forwards = forward_passes(run) if run else math.nan
    disp[f"{t} forwards"] = rd.fmt(forwards)
    mem, kind = peak_memory(run) if run else (math.nan, None)
    raw[f"{t}.peak_mem_gb"], raw[f"{t}.peak_mem_kind"] = mem, kind
    disp[f"{t} peak mem"] = rd.fmt_mem(mem, kind)
    raw[f"{t}.n_forward"] = forwards
    return raw, disp


def build_leaderboard(
    runs: list[TaskRun],
    baseline: str | None = None,
    n_boot: int = 2000,
    n_boot_cider: int = 200,
    seed: int = 0,
) -> Leaderboard:
    if not runs:
        raise LeaderboardError("no lmms-eval results (*_results.json) found")
    rows: dict[RowKey, dict[str, TaskRun]] = {}
    for run in runs:
        rows.setdefault(run.key, {})[run.task] = run
    keys = sorted(rows, key=sort_key)
    labels = row_labels(keys)
    differing, common_base = varying_base(keys)
    tasks = sorted({run.task for run in runs})
    opts = {"headlines": {t: headline_for(t) for t in tasks}, "n_boot": n_boot, "n_boot_cider": n_boot_cider,
            "seed": seed}
    base_key = resolve_baseline(baseline, keys, labels) if baseline else None
    base = rows[base_key] if base_key else {}
    flags = _Flags()
    flags.side_file_tasks = {run.task for run in runs
                             if any(r.get("efficiency_source") == "side_file" for r in run.samples or [])}
    raw_rows, disp_rows = [], []
    for key in keys:
        raw: dict[str, Any] = {"label": labels[key], "variant": key.variant, "lora": key.lora,
                               "settings": key.settings, "base": key.base}
        disp = {"variant": key.variant, "lora": key.lora or "none", "settings": key.settings or "default"}
        if any(differing.values()):
            disp["base"] = differing[key]
        for t in tasks:
            names = (f"{labels[base_key]} ({t})" if base_key else "", f"{labels[key]} ({t})")
            r, d = _task_columns(t, names, rows[key].get(t), base.get(t), key == base_key,
                                 base_key is not None, opts, flags)
            raw.update(r)
            disp.update(d)
        raw_rows.append(raw)
        disp_rows.append(disp)
    raw_df = pd.DataFrame(raw_rows)
    for t in tasks:  # counts print as integers, missing ones as empty
        raw_df[f"{t}.n"] = raw_df[f"{t}.n"].astype("Int64")
    def delta(base_run: TaskRun, run: TaskRun, metric: str, names: tuple[str, str]) -> bs.Interval:
        return _delta(base_run, run, metric, n_boot, seed, names)

    pairs_raw, pairs_disp, pair_notes = control_pairs(rows, keys, labels, opts["headlines"], delta)
    footnote = _footnote(raw_df, tasks, labels.get(base_key) if base_key else None, common_base, opts, flags)
    display = pd.DataFrame(disp_rows)
    # Runs from before n_forward was recorded have no forwards column to show (not a column of dashes).
    unrecorded = [f"{t} forwards" for t in tasks if raw_df[f"{t}.n_forward"].isna().all()]
    display = display.drop(columns=unrecorded)
    if len(unrecorded) < len(tasks):
        footnote += (" forwards = mean LM forward passes per answer (its prefill + the denoising steps it took "
                     "part in; threshold decoding lowers it).")
    return Leaderboard(
        raw=raw_df,
        display=display,
        tasks=tasks,
        headlines=opts["headlines"],
        baseline=labels[base_key] if base_key else None,
        footnote=footnote,
        runs=runs,
        labels=labels,
        pairs_raw=pairs_raw,
        pairs_display=pairs_disp,
        pairs_title=(
            "Matched-budget controls (cells that declare `controls:` in their sweep): Δ = reference − control, "
            "paired bootstrap over the same documents; tokens = mean visual tokens per document; "
            "\"matched\" only when the two means are equal."
        ),
        notes=pair_notes,
    )


def _footnote(
    raw: pd.DataFrame,
    tasks: list[str],
    base_label: str | None,
    common_base: dict[str, str],
    opts: dict[str, Any],
    flags: _Flags,
) -> str:
    ns = []
    for t in tasks:
        vals = sorted({int(v) for v in raw[f"{t}.n"].dropna()})
        ns.append(f"{t} n={'/'.join(map(str, vals)) if vals else '?'}")
    parts = [f"documents per task: {', '.join(ns)}"]
    if common_base:
        parts.append("all rows: " + ", ".join(f"{k}={v}" for k, v in common_base.items()))
    parts.append(f"95% CIs: percentile bootstrap over documents ({opts['n_boot']} resamples, seed {opts['seed']})")
    if flags.normal_ci:
        parts.append("* = normal approximation from lmms-eval stderr (no samples logged)")
    if base_label:
        parts.append(
            f"Δ = run − baseline {base_label}, paired bootstrap over the same document ids; "
            f"CIDEr Δ recomputes corpus CIDEr-D per resample ({opts['n_boot_cider']} resamples); "
            "tokens ×base = ratio of the mean visual-token counts, \"matched budget\" only when they are equal"
        )
    parts.append(
        "every column is per task: visual tokens = mean over all the task's documents (warm-up included); "
        "p50 = median per-document latency in ms without the task's warm-up document"
        + ("; latency ×base = the same median ratio over the documents timed in both rows" if base_label else "")
    )
    if flags.partial_ratio:
        parts.append("† = the two rows timed different documents (other warm-ups): ratio over the shared ones")
    for t in tasks:
        lacking = [label for col, label in OPTIONAL_COLUMNS if raw[f"{t}.{col}"].isna().all()]
        if lacking:
            parts.append(f"{t} logs no {', '.join(lacking)}")
    if flags.side_file_tasks:
        parts.append(f"{', '.join(sorted(flags.side_file_tasks))}: lmms-eval's own task(s), efficiency joined by "
                     "doc_id from <date_id>_shirg_efficiency_<task>.jsonl, documents paired by doc_id")
    parts.append(
        "CIDEr ×100; peak mem = max over the task's samples; GPU alloc = CUDA max allocated per sample, "
        "CPU RSS = process peak RSS (cumulative over the process's tasks)"
    )
    return "Note: " + "; ".join(parts) + "."
