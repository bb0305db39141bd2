"""Per-sample efficiency columns and their aggregations (latency percentiles, peak memory, visual tokens).

``process_results`` reads :func:`shirg_eval.harness.efficiency.lookup` for the doc's uid; each aggregated metric's
per-sample item carries the value and the warm-up flag so that the aggregation can leave warm-up samples out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from shirg_eval.harness import efficiency

EFFICIENCY_AGGREGATES = {
    # aggregated metric name -> (EfficiencyRecord field, statistic)
    "latency_ms_mean": ("latency_ms", "mean"),
    "latency_ms_p50": ("latency_ms", "p50"),
    "latency_ms_p95": ("latency_ms", "p95"),
    "prefill_ms_mean": ("prefill_ms", "mean"),
    "denoise_ms_mean": ("denoise_ms", "mean"),
    "peak_mem_gb_max": ("peak_mem_gb", "max_all"),  # a high-water mark: the warm-up sample is a real one
    "visual_tokens_mean": ("visual_tokens", "mean_all"),  # a count is exact: the warm-up sample counts too
}


def efficiency_fields(uid: str) -> dict[str, Any]:
    """Per-sample efficiency columns for the samples log plus the per-sample items of the aggregated metrics.

    Pure: reads the record, never removes it (process_results runs in threads and may be retried).
    """
    rec = efficiency.lookup(uid)
    out: dict[str, Any] = {}
    for name in efficiency.EFFICIENCY_FIELDS:
        out[name] = None if rec is None else getattr(rec, name)
    out["warmup"] = None if rec is None else bool(rec.warmup)
    out["peak_mem_kind"] = None if rec is None else rec.peak_mem_kind
    out["run_meta"] = None if rec is None else dict(rec.meta)
    for metric, (name, _stat) in EFFICIENCY_AGGREGATES.items():
        # The aggregation needs the warm-up flag next to the value, so each item carries both.
        out[metric] = {"value": out[name], "warmup": bool(out["warmup"])}
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def aggregate_efficiency(items: Sequence[Any], stat: str) -> float | None:
    """Timings leave warm-up samples out unless every measured sample is warm-up; ``mean_all`` / ``max_all``
    take every sample (exact counts, memory high-water marks). None values are skipped, and with no value at
    all the result is None (never 0)."""
    measured = [(float(it["value"]), bool(it.get("warmup")))
                for it in items if isinstance(it, dict) and it.get("value") is not None]
    if stat.endswith("_all"):
        values, stat = [v for v, _ in measured], stat.removesuffix("_all")
    else:
        values = [v for v, warm in measured if not warm] or [v for v, _ in measured]
    if not values:
        return None
    if stat == "mean":
        return sum(values) / len(values)
    if stat == "max":
        return max(values)
    if stat.startswith("p"):
        return _percentile(values, float(stat[1:]))
    raise ValueError(f"unknown statistic {stat!r}")


def _efficiency_aggregator(metric: str) -> Callable[[Sequence[Any]], float | None]:
    stat = EFFICIENCY_AGGREGATES[metric][1]

    def agg(items: Sequence[Any]) -> float | None:
        return aggregate_efficiency(items, stat)

    agg.__name__ = f"aggregate_{metric}"
    return agg


agg_latency_ms_mean = _efficiency_aggregator("latency_ms_mean")
agg_latency_ms_p50 = _efficiency_aggregator("latency_ms_p50")
agg_latency_ms_p95 = _efficiency_aggregator("latency_ms_p95")
agg_prefill_ms_mean = _efficiency_aggregator("prefill_ms_mean")
agg_denoise_ms_mean = _efficiency_aggregator("denoise_ms_mean")
agg_peak_mem_gb_max = _efficiency_aggregator("peak_mem_gb_max")
agg_visual_tokens_mean = _efficiency_aggregator("visual_tokens_mean")
