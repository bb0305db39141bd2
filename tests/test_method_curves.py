"""The accuracy-vs-tokens plot with one curve per method (rows grouped by variant without their budget args; a
row of another base -- checkpoint, dtype, KV dtype, kernel -- is another curve, as it is another row)."""

from __future__ import annotations

import math

import pandas as pd

from shirg_eval.report.plots import accuracy_vs_tokens_by_method, method_curves, method_of, row_methods
from shirg_eval.report.table import Leaderboard

NAN = math.nan
FP32, BF16 = "pretrained=/m,dtype=float32", "pretrained=/m,dtype=bfloat16"


def _board() -> Leaderboard:
    rows = [  # variant, lora, settings, base, tokens, acc, ci_low, ci_high
        ("lavida", None, "", FP32, 980.0, 60.0, 50.0, 70.0),
        ("visionzip", None, "k=912", FP32, 912.0, 58.0, 48.0, 68.0),
        ("visionzip", None, "k=256", FP32, 256.0, 40.0, 30.0, 50.0),
        ("visionzip", None, "k=912", BF16, 912.0, 57.0, 47.0, 67.0),  # another base: another curve
        ("shirg_fixed", None, "k=768", FP32, 912.0, 61.0, 51.0, 71.0),
        ("shirg_fixed", None, "k=256,scaffold=false", FP32, 256.0, 45.0, 35.0, 55.0),
        ("hired", None, "anyres=true,k=256", FP32, 256.0, 42.0, NAN, NAN),
        ("tome", None, "k=576", FP32, NAN, 30.0, 20.0, 40.0),  # no token count: left out
    ]
    # the columns build_leaderboard writes (per task)
    raw = pd.DataFrame(
        [{"variant": v, "lora": lo, "settings": s, "base": b, "chartqa_200.visual_tokens": t,
          "chartqa_200.relaxed_overall": a, "chartqa_200.relaxed_overall.ci_low": cl,
          "chartqa_200.relaxed_overall.ci_high": ch}
         for v, lo, s, b, t, a, cl, ch in rows]
    )
    return Leaderboard(raw=raw, display=raw, tasks=["chartqa_200"],
                       headlines={"chartqa_200": ("relaxed_overall", "relaxed acc %")}, baseline=None, footnote="",
                       runs=[])


def test_rows_group_into_one_curve_per_method(tmp_path):
    assert method_of("visionzip", "k=912") == "visionzip"
    assert method_of("hired", "anyres=true,k=256") == "hired[anyres=true]"
    assert method_of("shirg_fixed", "k=256,scaffold=false", "runs/lora") == "shirg_fixed@runs/lora"
    assert row_methods(_board())[:4] == ["lavida {dtype=float32}", "visionzip {dtype=float32}",
                                         "visionzip {dtype=float32}", "visionzip {dtype=bfloat16}"]
    curves = method_curves(_board(), "chartqa_200")
    assert list(curves) == ["hired[anyres=true] {dtype=float32}", "lavida {dtype=float32}",
                            "shirg_fixed {dtype=float32}", "visionzip {dtype=bfloat16}", "visionzip {dtype=float32}"]
    assert curves["visionzip {dtype=float32}"] == [(256.0, 40.0, 30.0, 50.0), (912.0, 58.0, 48.0, 68.0)]
    assert curves["visionzip {dtype=bfloat16}"] == [(912.0, 57.0, 47.0, 67.0)]
    assert [p[0] for p in curves["shirg_fixed {dtype=float32}"]] == [256.0, 912.0]
    files = accuracy_vs_tokens_by_method(_board(), "chartqa_200", tmp_path)
    assert [f.name for f in files] == ["accuracy_vs_tokens_by_method_chartqa_200.png",
                                       "accuracy_vs_tokens_by_method_chartqa_200.svg"]
    assert all(f.stat().st_size > 0 for f in files)


def test_rows_of_one_base_carry_no_base_in_their_curve_name():
    lb = _board()
    lb.raw = lb.raw[lb.raw["base"] == FP32].reset_index(drop=True)
    assert row_methods(lb)[:3] == ["lavida", "visionzip", "visionzip"]
    assert list(method_curves(lb, "chartqa_200")) == ["hired[anyres=true]", "lavida", "shirg_fixed", "visionzip"]
