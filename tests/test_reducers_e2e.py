"""Every reducer through ``lmms_eval --model <variant>`` on offline synthetic data, in one test process.

The ``lmms_eval`` console script is :func:`shirg_eval.cli.lmms_eval.main`; calling it in-process for each variant
runs the same code as the command line without paying lmms-eval's start-up once per method.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shirg_eval.cli import lmms_eval as cli

# (variant, extra model_args, expected visual tokens per sample)
RUNS = [
    ("visionzip", "k=96", 96),
    ("divprune", "k=96", 96),
    ("dart", "k=96", 96),
    ("hired", "k=96", 96),
    ("hired", "k=96,anyres=true", 96),
    ("prumerge", "k=96", 96),
    ("prumerge_plus", "k=96", 96),
    ("tome", "k=96", 96),
    ("fastv", "k=96", 96),
]


@pytest.mark.slow
def test_every_reducer_runs_through_lmms_eval(tmp_path, tiny_checkpoint, monkeypatch):
    from shirg_eval.cli.synth import main as synth

    synth(["--out", str(tmp_path / "data"), "--n", "6", "--what", "chartqa"])
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(tmp_path / "data" / "chartqa" / "test.parquet"))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites sys.argv for lmms-eval's parser
    failures = []
    for variant, args, tokens in RUNS:
        out = tmp_path / f"{variant}_{args.replace(',', '_').replace('=', '')}"
        monkeypatch.setenv("SHIRG_JOURNAL_DIR", str(out / ".shirg_journal"))
        monkeypatch.setenv("SHIRG_PICTURE_DIR", str(out))
        rc = cli.main(["--model", variant, "--model_args", f"pretrained={tiny_checkpoint},gen_length=8,{args}",
                       "--tasks", "chartqa_200", "--limit", "2", "--output_path", str(out), "--log_samples"])
        if rc != 0:
            failures.append(f"{variant} {args}: exit {rc}")
            continue
        samples = sorted(Path(out).rglob("*_samples_chartqa_200.jsonl"))
        rows = [json.loads(line) for line in samples[-1].read_text().splitlines()]
        assert len(rows) == 2
        for row in rows:
            assert row["visual_tokens"] == tokens, (variant, row["visual_tokens"])
            assert row["run_meta"]["variant"] == variant
            selection = row["run_meta"]["selection"]
            assert selection["k"] == 96 and selection["n_tokens"] == [96]
            if variant == "fastv":
                assert selection["fastv"]["n_visual_in"] == 2304 and selection["fastv"]["full_layers_ms"] > 0
            if "anyres" in args:
                assert selection["anyres"] is True and sum(selection["view_budgets"][0]) == 96
        assert list(Path(out).glob(f"selection_{variant}_*.png")), f"{variant}: no selection picture"
    assert not failures, failures
