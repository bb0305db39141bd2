"""The learning-rate schedule of both trainers: linear warm-up, then cosine or linear decay to 0 (or constant).

The two trainers' warm-ups differ by one step, and each keeps its own so that its runs keep their numbers: the
LoRA trainer's ramp is ``(step + 1) / (warmup + 1)`` (the peak comes on the first step after the warm-up), the
reference trainer's is ``(step + 1) / warmup`` (the peak comes on the warm-up's last step, ``peak_in_warmup``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("cosine", "linear", "constant")


def warmup_then_decay(step: int, total: int, warmup: int, kind: str = "cosine", *, progress_floor: float = 0.0,
                      peak_in_warmup: bool = False) -> float:
    """The LR factor at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then ``kind`` decay.

    ``progress_floor`` lifts the decay's progress to at least that share: a stage under a wall-clock cap passes the
    share of its time used, so the rate anneals by whichever of steps or time runs out first.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {kind!r}; expected one of {SCHEDULES}")
    if step < warmup:
        return (step + 1) / (warmup if peak_in_warmup else warmup + 1)
    if kind == "constant":
        return 1.0
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), progress_floor))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_lambda(total_steps: int, warmup_steps: int, kind: str) -> Callable[[int], float]:
    """The LoRA trainer's schedule as a ``LambdaLR`` function of the step."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {kind!r}; expected one of {SCHEDULES}")
    return lambda step: warmup_then_decay(step, total_steps, warmup_steps, kind)
