"""Per-sample efficiency records, passed from the lmms-eval model to the tasks' ``process_results``.

lmms-eval 0.7.3 gives ``process_results`` only ``(doc, results)``: no doc id and no model metadata, and
``GenerationResult`` carries token counts only. The model therefore records one :class:`EfficiencyRecord` per
generated sample under the doc's ``shirg_uid`` (a stable id that the tasks' ``process_docs`` adds), and the task
reads it back. Lookups never remove entries because lmms-eval retries ``process_results`` on exceptions and runs
it in worker threads.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

EFFICIENCY_FIELDS = ("latency_ms", "prefill_ms", "denoise_ms", "peak_mem_gb", "visual_tokens", "n_forward",
                     "batch_size", "amortized_latency_ms")


@dataclass
class EfficiencyRecord:
    latency_ms: float | None
    prefill_ms: float | None
    denoise_ms: float | None
    peak_mem_gb: float | None
    peak_mem_kind: str | None  # "cuda_max_allocated" or "cpu_peak_rss" (process-wide, not per sample)
    visual_tokens: int | None
    n_forward: int | None = None  # LM forward passes of this answer: its prefill + the steps it took part in
    # In a batch, latency_ms is the batch's wall time (what each answer waited); amortized_latency_ms divides it
    # by the batch size (the throughput view). At batch 1 the two are equal.
    batch_size: int = 1
    amortized_latency_ms: float | None = None
    warmup: bool = False  # first sample of its task in this process: timings left out of aggregates
    meta: dict[str, Any] = field(default_factory=dict)  # what actually ran: variant, params, lora, seed, ...
    error: str | None = None  # the sample failed (allow_failures=true): not scored, counted as failed

    @classmethod
    def failure(cls, error: str, meta: dict[str, Any]) -> EfficiencyRecord:
        return cls(None, None, None, None, None, None, meta=meta, error=error)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
