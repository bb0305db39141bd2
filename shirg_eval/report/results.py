"""Read lmms-eval 0.7.3 output folders into :class:`TaskRun` records (the layout's names: harness/compat.py).

lmms-eval writes ``<output_path>/<model_name_sanitized>/<date_id>_results.json`` (``date_id`` is
``%Y%m%d_%H%M%S``) and, with ``--log_samples``, ``<date_id>_samples_<task>.jsonl`` beside it. Aggregated metrics
sit in ``results[task]["<metric>,<filter>"]`` (filter ``none`` for our tasks); each sample row holds ``doc_id``,
``target``, ``filtered_resps`` and every key ``process_results`` returned. For lmms-eval's own tasks the
efficiency fields come from ``<date_id>_shirg_efficiency_<task>.jsonl`` beside it, joined by ``doc_id``.

Everything here is tolerant: a metric that is absent, None or not a number is NaN (shown as missing), never 0.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from shirg_eval.harness.compat import METRIC_FILTER_SUFFIX, RESULTS_SUFFIX, results_stamp, samples_file
from shirg_eval.harness.identity import legacy_identity
from shirg_eval.harness.side_efficiency import join_side_rows, side_file
from shirg_eval.records import RunIdentity
from shirg_eval.report.rows import RowKey

CELL_FILE = "cell.json"  # written by shirg-sweep into each cell folder: {cell, controls, ...}

def scalar(value: Any) -> float:
    """A per-sample metric value as float; NaN when absent or not numeric.

    lmms-eval tasks return plain numbers, booleans, None (metric not applicable to this doc, e.g. ChartQA's
    ``relaxed_human_split`` on an augmented question) or small dicts for custom aggregations
    (``{"score": 1.0, ...}``); all are accepted.
    """
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    if isinstance(value, dict):
        for key in ("score", "value", "acc", "accuracy", "relaxed", "anls"):
            if key in value:
                return scalar(value[key])
        numbers = [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return float(numbers[0]) if len(numbers) == 1 else math.nan
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return scalar(value[0])
    return math.nan


def parse_model_args(model_args: Any) -> dict[str, str]:
    """lmms-eval's ``k=v,k2=v2`` string (or an already-parsed dict) as a dict of strings."""
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    out: dict[str, str] = {}
    for part in str(model_args or "").split(","):
        if "=" in part:
            key, val = part.split("=", 1)
            out[key.strip()] = val.strip()
    return out


@dataclass
class TaskRun:
    """One task of one lmms-eval invocation."""

    identity: RunIdentity  # what the run computed (recorded, or derived for runs from before identities)
    task: str
    results_path: Path
    stamp: str  # the date_id prefix of the results file; sorts chronologically
    results: dict[str, Any]
    metrics: dict[str, Any]  # results["results"][task] with the ",none" filter suffix stripped
    samples: list[dict[str, Any]] | None = None
    samples_path: Path | None = None
    run_meta: dict[str, Any] = field(default_factory=dict)
    cell: str | None = None  # the shirg-sweep cell that produced the run (from cell.json)
    controls: str | None = None  # the cell this run is a same-budget control of (from cell.json)

    @cached_property
    def key(self) -> RowKey:
        return RowKey.of(self.identity)

    @property
    def variant(self) -> str:
        return self.identity.variant

    @property
    def lora(self) -> str | None:
        return self.identity.lora

    @property
    def name(self) -> str:
        return self.key.label()

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config") or {}

    # ---- per-document views -------------------------------------------------------------------
    def doc_ids(self) -> list[str]:
        return [doc_uid(row) for row in self.samples or []]

    def per_doc(self, metric: str) -> dict[str, float]:
        """``{doc id: value}`` for a scalar metric; docs where it is NaN are left out."""
        acc: dict[str, list[float]] = {}
        for row in self.samples or []:
            val = scalar(row.get(metric))
            if not math.isnan(val):
                acc.setdefault(doc_uid(row), []).append(val)
        # repeats of one doc (lmms-eval `repeats`) count once, as their mean
        return {uid: float(np.mean(vals)) for uid, vals in acc.items()}

    def per_doc_raw(self, metric: str) -> dict[str, Any]:
        """``{doc id: raw value}`` (e.g. CIDEr's ``{"pred", "refs"}`` dicts); None values left out."""
        return {doc_uid(row): row[metric] for row in self.samples or [] if row.get(metric) is not None}

    def aggregate(self, metric: str) -> float:
        return scalar(self.metrics.get(metric))


def doc_uid(row: dict[str, Any]) -> str:
    """The pairing key of a sample: the task's stable ``shirg_uid`` when logged, else lmms-eval's ``doc_id``."""
    uid = row.get("shirg_uid")
    if uid is None and isinstance(row.get("doc"), dict):
        uid = row["doc"].get("shirg_uid")
    return str(uid if uid is not None else row.get("doc_id"))


def find_results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*_results.json`` at any depth under ``paths``, skipping hidden folders (e.g. ``.previous``)."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() and p.name.endswith(RESULTS_SUFFIX):
            found.add(p.resolve())
            continue
        if not p.is_dir():
            continue
        for f in p.rglob(f"*{RESULTS_SUFFIX}"):
            rel = f.relative_to(p).parts
            if not any(part.startswith(".") for part in rel):
                found.add(f.resolve())
    return sorted(found)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def _first_meta(samples: list[dict[str, Any]] | None) -> dict[str, Any]:
    for row in samples or []:
        meta = row.get("run_meta")
        if isinstance(meta, dict) and meta:
            return meta
    return {}


def identity_of(results: dict[str, Any], meta: dict[str, Any]) -> RunIdentity:
    """The run's recorded identity; for results written before identities were recorded, one derived from their
    ``run_meta`` and ``--model_args``."""
    if isinstance(meta.get("identity"), dict):
        return RunIdentity.from_json(meta["identity"])
    config = results.get("config") or {}
    args = parse_model_args(config.get("model_args"))
    variant = meta.get("variant") or args.get("variant") or config.get("model") or "unknown"
    return legacy_identity(str(variant), args, meta)


def _cell_info(results_path: Path) -> dict[str, Any]:
    """The shirg-sweep ``cell.json`` of the cell folder holding ``results_path`` (lmms-eval writes results one or
    two levels below ``--output_path``); {} when there is none."""
    for folder in (results_path.parent, results_path.parent.parent):
        f = folder / CELL_FILE
        if f.is_file():
            try:
                info = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return info if isinstance(info, dict) else {}
    return {}


def load_results_file(path: Path) -> list[TaskRun]:
    """All tasks of one results.json, with their samples when logged."""
    results = json.loads(path.read_text(encoding="utf-8"))
    stamp = results_stamp(path)
    cell = _cell_info(path)
    runs = []
    for task, agg in (results.get("results") or {}).items():
        metrics = {}
        for k, v in (agg or {}).items():
            metrics[k.removesuffix(METRIC_FILTER_SUFFIX)] = v
        sp = samples_file(path, task)
        samples = _read_jsonl(sp) if sp.exists() else None
        side = side_file(path, task)
        if samples is not None and side.exists():  # lmms-eval's own task: efficiency from the side file
            join_side_rows(samples, side, task)
        meta = _first_meta(samples)
        runs.append(
            TaskRun(
                identity=identity_of(results, meta),
                cell=cell.get("cell"),
                controls=cell.get("controls"),
                task=task,
                results_path=path,
                stamp=stamp,
                results=results,
                metrics=metrics,
                samples=samples,
                samples_path=sp if samples is not None else None,
                run_meta=meta,
            )
        )
    return runs


def load_task_runs(paths: Iterable[str | Path], log: TextIO | None = None) -> list[TaskRun]:
    """Load every run under ``paths``; for a repeated (row key, task) keep the newest.

    Runs with another base checkpoint, dtype, KV dtype or attention kernel have another key: they are never
    collapsed, they become separate rows.
    """
    log = log if log is not None else sys.stderr
    newest: dict[tuple[RowKey, str], TaskRun] = {}
    for path in find_results_files(paths):
        try:
            runs = load_results_file(path)
        except (OSError, json.JSONDecodeError) as exc:
            print(f"shirg-leaderboard: skipping unreadable {path}: {exc}", file=log)
            continue
        for run in runs:
            k = (run.key, run.task)
            old = newest.get(k)
            if old is None:
                newest[k] = run
                continue
            keep, drop = sorted((old, run), key=lambda r: (r.stamp, r.results_path.stat().st_mtime))[::-1]
            newest[k] = keep
            print(
                f"shirg-leaderboard: {run.key.label(with_base=True)} / {run.task} appears twice; using the newest "
                f"{keep.results_path} and ignoring {drop.results_path}",
                file=log,
            )
    return list(newest.values())
