"""``python -m shirg_eval.bench.selection_bench`` end to end at tiny widths: every method, FastV, the probe check."""

from __future__ import annotations

import json

from shirg_eval.bench.selection_bench import METHODS, main


def test_selection_bench_covers_every_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--dims", "tiny", "--layers", "1", "--image-size", "224", "--k", "64", "16", "--repeats", "1",
                 "--selector-repeats", "1", "--lm-repeats", "1", "--check-probe", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["probe_max_abs_error"] < 1e-6
    rows = {(r["method"], r["k"]): r for r in report["methods"]}
    for label, name, _ in METHODS:
        ks = ["adaptive"] if name == "shirg_original" else [64, 16]
        for k in ks:
            row = rows[(label, k)]
            assert row["ms"] > 0 and row["fraction_of_tower"] > 0
            if k != "adaptive" and label != "shirg_fixed":  # reducers return exactly k (SHIRG adds its scaffold)
                assert row["lm_tokens"] == k
    assert [f["k"] for f in report["fastv"]] == [64, 16]
    assert all(f["added_prefill_ms"] == f["added_prefill_ms"] for f in report["fastv"])  # a number, not NaN
    printed = capsys.readouterr().out
    assert "FastV (in the LM" in printed and "of the tower" in printed
