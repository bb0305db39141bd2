"""Per-task efficiency numbers of one run, from its logged samples (the aggregated results only as a fallback).

Every number is per task, so a reader can recompute it from that task's samples file:

* **latency p50**: median per-document latency over the task's *timed* documents: all but the warm-up ones
  (the first document of each task in each process; if every document is a warm-up, all of them);
* **latency ratio**: median over the documents timed in *both* runs, divided the same way; when both runs
  timed the same documents (the usual case) it equals the ratio of the two p50 columns;
* **visual tokens**: mean over *all* the task's documents, warm-up included (a count is exact);
* **forward passes**: mean LM forwards per answer (``n_forward``: prefill + denoising steps) over all the task's
  documents (a count is exact); it is what threshold decoding lowers;
* **peak memory**: max over the task's samples, with its kind (``cuda_max_allocated`` is reset per sample;
  ``cpu_peak_rss`` is the process's high-water mark, so a later task in the same process includes earlier ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from shirg_eval.report.results import TaskRun, doc_uid, scalar


def _eff(row: dict[str, Any], name: str) -> Any:
    """An efficiency field: top-level in the sample row, or nested under ``efficiency``."""
    if name in row:
        return row[name]
    nested = row.get("efficiency")
    return nested.get(name) if isinstance(nested, dict) else None


def timed_latencies(run: TaskRun) -> dict[str, float]:
    """``{doc id: latency ms}`` of the timed documents (warm-up left out unless every document is warm-up);
    repeats of one document count once, as their mean."""
    steady: dict[str, list[float]] = {}
    warm: dict[str, list[float]] = {}
    for row in run.samples or []:
        value = scalar(_eff(row, "latency_ms"))
        if not math.isnan(value):
            (warm if _eff(row, "warmup") else steady).setdefault(doc_uid(row), []).append(value)
    chosen = steady or warm
    return {uid: float(np.mean(v)) for uid, v in chosen.items()}


def latencies(runs: Iterable[TaskRun]) -> list[float]:
    """The timed per-document latencies of several runs, concatenated."""
    return [v for run in runs for v in timed_latencies(run).values()]


def latency_p50(run: TaskRun) -> float:
    """Median timed latency (ms); without samples, the task's aggregated ``latency_ms_p50``; NaN if neither."""
    timed = timed_latencies(run)
    if timed:
        return float(np.median(list(timed.values())))
    return run.aggregate("latency_ms_p50")


def latency_ratio(run: TaskRun, base: TaskRun) -> tuple[float, bool]:
    """(median latency of ``run`` / median of ``base`` over the documents timed in both, whether that set is
    each run's full timed set). Without samples on either side: the ratio of the aggregated p50s."""
    a, b = timed_latencies(run), timed_latencies(base)
    if not a or not b:
        num, den = latency_p50(run), latency_p50(base)
        return (num / den if den and not math.isnan(den) else math.nan), True
    shared = sorted(set(a) & set(b))
    if not shared:
        return math.nan, False
    ratio = float(np.median([a[i] for i in shared]) / np.median([b[i] for i in shared]))
    return ratio, len(shared) == len(a) == len(b)


def visual_tokens(run: TaskRun) -> float:
    """Mean visual-token count over all the task's documents, warm-up included."""
    vals = [scalar(_eff(r, "visual_tokens")) for r in run.samples or []]
    vals = [v for v in vals if not math.isnan(v)]
    if vals:
        return float(np.mean(vals))
    for name in ("visual_tokens_mean", "visual_tokens"):
        if not math.isnan(run.aggregate(name)):
            return run.aggregate(name)
    return math.nan


def forward_passes(run: TaskRun) -> float:
    """Mean LM forward passes per answer over all the task's documents (NaN when no sample recorded them)."""
    vals = [scalar(_eff(r, "n_forward")) for r in run.samples or []]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def peak_memory(run: TaskRun) -> tuple[float, str | None]:
    """Largest peak memory (GB) over the task's samples and its kind; else the aggregated value."""
    cands = [(scalar(_eff(r, "peak_mem_gb")), _eff(r, "peak_mem_kind")) for r in run.samples or []]
    if not cands:
        for name in ("peak_mem_gb_max", "peak_mem_gb"):
            if not math.isnan(run.aggregate(name)):
                cands = [(run.aggregate(name), run.metrics.get("peak_mem_kind"))]
                break
    best, kind = math.nan, None
    for val, k in cands:
        if not math.isnan(val) and (math.isnan(best) or val > best):
            best, kind = val, (str(k) if k else kind)
    return best, kind
