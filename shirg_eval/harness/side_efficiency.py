"""Per-sample efficiency for lmms-eval's *own* tasks (``textvqa_val``, ``infovqa_val``, ...), in a side file.

Our tasks' ``process_results`` put latency, memory and visual tokens into the samples log through the doc's
``shirg_uid``; lmms-eval's own tasks have no such id and their ``process_results`` is lmms-eval's, untouched. So
for a doc without ``shirg_uid`` the model appends its :class:`EfficiencyRecord` keyed by ``(task, doc_id)`` to
``$SHIRG_EFFICIENCY_DIR/<task>.rank<r>.jsonl``; the ``lmms_eval`` command sets that folder to
``OUTPUT/.shirg_efficiency`` and, when lmms-eval has written its results, moves each task's rows beside the samples
log as ``<date_id>_shirg_efficiency_<task>.jsonl`` (:func:`place_beside_results`). ``shirg-leaderboard`` joins them
into the sample rows by ``doc_id`` (:func:`join_side_rows`); the last row of a ``(task, doc_id)`` wins, so a rerun
that resumes from the journal overrides an interrupted run's rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .compat import results_stamp
from .efficiency import EfficiencyRecord

SIDE_DIR_ENV = "SHIRG_EFFICIENCY_DIR"
SIDE_DIR_NAME = ".shirg_efficiency"
SIDE_SUFFIX = "_shirg_efficiency_"  # <date_id>_shirg_efficiency_<task>.jsonl, beside <date_id>_samples_<task>.jsonl


def side_file(results_path: Path, task: str) -> Path:
    """The side file of ``task`` beside ``<date_id>_results.json``."""
    return results_path.with_name(f"{results_stamp(results_path)}{SIDE_SUFFIX}{task}.jsonl")


class SideEfficiencyLog:
    """Appends one JSON line per sample: ``{"task", "split", "doc_id", <EfficiencyRecord fields>}``."""

    def __init__(self, directory: str | Path, rank: int = 0) -> None:
        self.directory = Path(directory)
        self.rank = rank

    def add(self, task: str, split: str, doc_id: int, record: EfficiencyRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        row = {"task": task, "split": split, "doc_id": doc_id, **record.as_dict()}
        with open(self.directory / f"{task}.rank{self.rank}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=str) + "\n")


def read_rows(paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(task, str(doc_id)): row}``; later rows win; lines cut by a crash are skipped."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[(str(row.get("task")), str(row.get("doc_id")))] = row
    return rows


def place_beside_results(staging: str | Path, results_files: Iterable[str | Path]) -> list[Path]:
    """Move the staged rows of every task of each new results.json beside it; returns the files written."""
    staging = Path(staging)
    if not staging.is_dir():
        return []
    written: list[Path] = []
    used: set[Path] = set()
    for results_path in map(Path, results_files):
        try:
            tasks = json.loads(results_path.read_text(encoding="utf-8")).get("results") or {}
        except (OSError, ValueError):
            continue
        for task in tasks:
            staged = sorted(staging.glob(f"{task}.rank*.jsonl"))
            if not staged:
                continue
            rows = read_rows(staged)
            out = side_file(results_path, task)
            out.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows.values()), encoding="utf-8")
            written.append(out)
            used.update(staged)
    for path in used:
        os.remove(path)
    return written


def join_side_rows(samples: list[dict[str, Any]], side: Path, task: str) -> int:
    """Fill each sample row of ``task`` that has no efficiency fields from the side file (by ``doc_id``), in
    place; returns how many rows were joined."""
    rows = read_rows([side])
    joined = 0
    for sample in samples:
        if sample.get("latency_ms") is not None or sample.get("visual_tokens") is not None:
            continue  # one of our tasks: process_results logged them already
        row = rows.get((task, str(sample.get("doc_id"))))
        if row is None:
            continue
        for name, value in row.items():
            if name not in ("task", "split", "doc_id") and sample.get(name) is None:
                sample[name] = value
        sample["run_meta"] = sample.get("run_meta") or row.get("meta")
        sample["efficiency_source"] = "side_file"
        joined += 1
    return joined
