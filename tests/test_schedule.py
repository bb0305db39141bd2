"""One LR schedule for both trainers, each keeping its own warm-up (the numbers their runs were made with)."""

from __future__ import annotations

import math

import pytest

from shirg_eval.training.schedule import lr_lambda, warmup_then_decay


def test_the_two_warm_ups_keep_their_numbers():
    lora = lr_lambda(total_steps=10, warmup_steps=4, kind="cosine")
    assert [lora(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # peak one step after the ramp
    reference = [warmup_then_decay(s, 10, 4, peak_in_warmup=True) for s in range(4)]
    assert reference == pytest.approx([0.25, 0.5, 0.75, 1.0])  # peak on the ramp's last step
    assert lora(4) == warmup_then_decay(4, 10, 4, peak_in_warmup=True) == 1.0


@pytest.mark.parametrize(("kind", "at_half", "at_end"), [("cosine", 0.5, 0.0), ("linear", 0.5, 0.0),
                                                         ("constant", 1.0, 1.0)])
def test_decays(kind, at_half, at_end):
    f = lr_lambda(total_steps=10, warmup_steps=4, kind=kind)
    assert f(7) == pytest.approx(at_half) and f(10) == pytest.approx(at_end) and f(50) == pytest.approx(at_end)


def test_a_time_cap_anneals_early():
    """The reference trainer's wall-clock cap: progress is at least the share of the time used."""
    assert warmup_then_decay(4, 100, 4, progress_floor=0.9) == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))
    assert warmup_then_decay(4, 100, 4, progress_floor=1.5) == pytest.approx(0.0)
    assert warmup_then_decay(60, 100, 4, progress_floor=0.1) == pytest.approx(
        0.5 * (1 + math.cos(56 / 96 * math.pi)))  # the steps are further along than the clock


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown LR schedule"):
        lr_lambda(10, 1, "step")
