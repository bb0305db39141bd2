"""Per-sample efficiency records, passed from the lmms-eval model to the tasks' ``process_results``.

lmms-eval 0.7.3 gives ``process_results`` only ``(doc, results)``: no doc id and no model metadata, and
``GenerationResult`` carries token counts only. The model therefore records one
:class:`~shirg_eval.records.EfficiencyRecord` per generated sample under the doc's ``shirg_uid`` (a stable id
that the tasks' ``process_docs`` adds), and the task reads it back. Lookups never remove entries because lmms-eval retries ``process_results`` on exceptions and runs
it in worker threads.
"""

from __future__ import annotations

import threading

from ..records import EFFICIENCY_FIELDS, EfficiencyRecord

__all__ = ["EFFICIENCY_FIELDS", "EfficiencyRecord", "clear", "lookup", "record"]  # the records live in records.py

_lock = threading.Lock()
_records: dict[str, EfficiencyRecord] = {}


def record(uid: str, rec: EfficiencyRecord) -> None:
    with _lock:
        _records[str(uid)] = rec


def lookup(uid: str) -> EfficiencyRecord | None:
    """The record for ``uid``, or None when the model did not run for it (e.g. ``--use_cache``)."""
    with _lock:
        return _records.get(str(uid))


def clear() -> None:
    with _lock:
        _records.clear()
