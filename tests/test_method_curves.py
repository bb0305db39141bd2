"""The accuracy-vs-tokens plot with one curve per method (rows grouped by variant without their budget args)."""

from __future__ import annotations

import math

import pandas as pd

from shirg_eval.report.leaderboard import Leaderboard
from shirg_eval.report.plots import accuracy_vs_tokens_by_method, method_curves, method_of

NAN = math.nan


def _board() -> Leaderboard:
    rows = [  # variant, lora, settings, tokens, acc, ci_low, ci_high
        ("lavida", None, "", 980.0, 60.0, 50.0, 70.0),
        ("visionzip", None, "k=912", 912.0, 58.0, 48.0, 68.0),
        ("visionzip", None, "k=256", 256.0, 40.0, 30.0, 50.0),
        ("shirg_fixed", None, "k=768", 912.0, 61.0, 51.0, 71.0),
        ("shirg_fixed", None, "k=256,scaffold=false", 256.0, 45.0, 35.0, 55.0),
        ("hired", None, "anyres=true,k=256", 256.0, 42.0, NAN, NAN),
        ("tome", None, "k=576", NAN, 30.0, 20.0, 40.0),  # no token count: left out
    ]
    raw = pd.DataFrame(
        [{"variant": v, "lora": lo, "settings": s, "visual_tokens": t, "chartqa_200.relaxed_overall": a,
          "chartqa_200.relaxed_overall.ci_low": cl, "chartqa_200.relaxed_overall.ci_high": ch}
         for v, lo, s, t, a, cl, ch in rows]
    )
    return Leaderboard(raw=raw, display=raw, tasks=["chartqa_200"],
                       headlines={"chartqa_200": ("relaxed_overall", "relaxed acc %")}, baseline=None, footnote="",
                       runs=[])


def test_rows_group_into_one_curve_per_method(tmp_path):
    assert method_of("visionzip", "k=912") == "visionzip"
    assert method_of("hired", "anyres=true,k=256") == "hired[anyres=true]"
    assert method_of("shirg_fixed", "k=256,scaffold=false", "runs/lora") == "shirg_fixed@runs/lora"
    curves = method_curves(_board(), "chartqa_200")
    assert list(curves) == ["hired[anyres=true]", "lavida", "shirg_fixed", "visionzip"]
    assert curves["visionzip"] == [(256.0, 40.0, 30.0, 50.0), (912.0, 58.0, 48.0, 68.0)]
    assert [p[0] for p in curves["shirg_fixed"]] == [256.0, 912.0]
    files = accuracy_vs_tokens_by_method(_board(), "chartqa_200", tmp_path)
    assert [f.name for f in files] == ["accuracy_vs_tokens_by_method_chartqa_200.png",
                                       "accuracy_vs_tokens_by_method_chartqa_200.svg"]
    assert all(f.stat().st_size > 0 for f in files)
