"""Order-independent timing: warm every cell, then interleave the timed rounds; spreads and paired ratios.

Timing variants one after another lets anything that drifts during a run (another job on the machine, GPU clock
boost and throttling, first-call autotuning, page-ins, allocator growth) land on whichever variant runs at that
moment. Here every *cell* (a variant under one configuration) is warmed up first, then each timed round runs
every cell once, in a fresh seeded shuffle per round (or plain round robin), so drift falls on all cells alike.

Ratios are taken *within* a round (cell A's time over cell B's time measured minutes apart at most), and reported
as min / median / max over the rounds. A ratio whose spread (max - min) is wider than the effect it claims
(|median - 1|) is flagged ``noisy``: the rounds disagree more than the ratio differs from "no difference".

Pure Python: the runner is any callable, so the scheduling and the statistics are tested without a model.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

ORDERS = ("shuffle", "roundrobin", "sequential")


def schedule(keys: Sequence[str], rounds: int, seed: int = 0, order: str = "shuffle") -> list[list[str]]:
    """The cells to run in each timed round.

    ``shuffle``: every round holds every cell once, in an order drawn from ``Random(seed)`` (one draw per round);
    ``roundrobin``: every round in the given order (A B C A B C ...; a steady drift still favours the cells that
    run early in the round); ``sequential``: the old way, one cell's rounds back to back (A A A B B B ...), kept
    only to show what interleaving fixes.
    """
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {ORDERS}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    keys = list(keys)
    if len(set(keys)) != len(keys):
        raise ValueError(f"cell keys must be unique, got {keys}")
    if order == "roundrobin":
        return [list(keys) for _ in range(rounds)]
    if order == "sequential":
        return [[k] * rounds for k in keys]  # "rounds" here are blocks of one cell; results are re-indexed
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        perm = list(keys)
        rng.shuffle(perm)
        out.append(perm)
    return out


def run_interleaved(cells: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1, seed: int = 0,
                    order: str = "shuffle", on_round: Callable[[int, dict[str, list[Any]]], None] | None = None
                    ) -> dict[str, list[Any]]:
    """Warm every cell ``warmup`` times (all of them before any timed run), then run the timed rounds.

    Returns ``{key: [result of round 0, round 1, ...]}``; ``on_round(i, results_so_far)`` is called after each
    timed round (e.g. to save partial results in case a time limit stops the run).
    """
    plan = schedule(list(cells), rounds, seed, order)
    for _ in range(warmup):
        for fn in cells.values():
            fn()
    results: dict[str, list[Any]] = {key: [] for key in cells}
    for i, keys in enumerate(plan):
        for key in keys:
            results[key].append(cells[key]())
        if on_round is not None:
            on_round(i, results)
    return results


def spread(values: Sequence[float]) -> dict[str, float]:
    """min / median / max / spread (max - min) / n of a list of measurements."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values")
    lo, hi = min(vals), max(vals)
    return {"min": lo, "median": statistics.median(vals), "max": hi, "spread": hi - lo, "n": len(vals)}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """Per-round ratios ``numerator[i] / denominator[i]`` with their spread; ``noisy`` when the spread across
    rounds is wider than the effect the median claims (``|median - 1|``)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} numerator rounds but {len(denominator)} denominator rounds")
    per_round = [n / d for n, d in zip(numerator, denominator, strict=True) if d]
    stats = spread(per_round)
    effect = abs(stats["median"] - 1.0)
    return {**stats, "per_round": per_round, "effect": effect, "noisy": stats["spread"] > effect}


def verdict(stats: dict[str, float], op: str, threshold: float) -> str:
    """PASS / MISS when every round lands on the same side of the threshold, UNCLEAR when the rounds straddle it."""
    def ok(x: float) -> bool:
        return x <= threshold if op == "<=" else x >= threshold

    lo_ok, hi_ok = ok(stats["min"]), ok(stats["max"])
    if lo_ok and hi_ok:
        return "PASS"
    if not lo_ok and not hi_ok:
        return "MISS"
    return "UNCLEAR"
