"""One CIDEr: the leaderboard's CIDEr equals the one results.json carries for the same run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shirg_eval.report.results import load_task_runs
from shirg_eval.report.table import build_leaderboard
from shirg_eval.tasks.results import aggregate_cider

sys.path.insert(0, str(Path(__file__).parent / "data"))
from lmms_fixture import sample_row, write_run  # noqa: E402

# (gold, prediction): punctuation and numbers where tokenisers disagree ("12.5", "$450", "No. 5", "U.S.", "(a)").
PAIRS = {
    "chartqa_200": [("12.5", "12.5"), ("45%", "45 %"), ("1,000", "1000"), ("Yes", "yes."), ("No. 5", "No 5"),
                    ("2015", "2015"), ("U.S.", "US"), ("(a)", "a")],
    "docvqa_200": [("Dr. Smith", "Dr Smith"), ("$450", "$ 450"), ("March 3, 2001", "March 3 2001"),
                   ("ACME Corp.", "ACME Corp"), ("Page 4", "page 4"), ("don't know", "do not know"),
                   ("e-mail", "email"), ("Invoice #12", "Invoice 12")],
}
EFF = {"latency_ms": 10.0, "prefill_ms": 1.0, "denoise_ms": 9.0, "peak_mem_gb": 1.0, "peak_mem_kind": "cpu_peak_rss",
       "visual_tokens": 912, "warmup": False}


def test_leaderboard_cider_equals_results_json(tmp_path: Path) -> None:
    rows = {
        task: [sample_row(task, i, f"{task}-{i}", gold, pred, 0.0, EFF, {"variant": "shirg_fixed"})
               for i, (gold, pred) in enumerate(pairs)]
        for task, pairs in PAIRS.items()
    }
    path = write_run(tmp_path, "shirg_fixed", "pretrained=/models/tiny", "20250101_000000", rows, None)
    results = json.loads(path.read_text())
    for task, task_rows in rows.items():  # what the task's `cider` aggregation writes into results.json
        results["results"][task]["cider,none"] = aggregate_cider([r["cider"] for r in task_rows])
    path.write_text(json.dumps(results))

    board = build_leaderboard(load_task_runs([tmp_path]), n_boot=50, n_boot_cider=10)
    for task in PAIRS:
        in_results = results["results"][task]["cider,none"]
        assert in_results > 0
        assert board.raw[f"{task}.cider"][0] == pytest.approx(in_results, rel=1e-12, abs=1e-9)
