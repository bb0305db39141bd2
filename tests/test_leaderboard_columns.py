"""Leaderboard columns a reader can recompute: a hand-built two-task run folder, every number derived by hand.

Each run processed chartqa_200 (5 docs) then docvqa_200 (4 docs) in one process, so the first doc of *each*
task is a warm-up (pool_k is sharded differently: its chartqa warm-up is doc 2).

    latency ms (w = warm-up)      chartqa docs 0..4               docvqa docs 0..3
    lavida                        900w 100 120 140 160 -> p50 130   700w 300 340 320 -> p50 320
    shirg_fixed                   800w 200 260 300 240 -> p50 250   650w 330 350 340 -> p50 340
    pool_k (chartqa only)         150 110 900w 130 170 -> p50 140
    random_k_768 (chartqa only)   500w 100 100 100 100 -> p50 100

    ratios vs lavida: shirg_fixed chartqa 250/130 = 1.92, docvqa 340/320 = 1.06 (pooled over both tasks the p50s
    would be 250 and 160); pool_k over the docs timed in both (1, 3, 4): median(110, 130, 170) / median(100, 140,
    160) = 130/140 = 0.93, marked † since neither run's own timed set is that one.

    visual tokens (mean over all docs, warm-up included): lavida chartqa (1000+980+980+960+980)/5 = 980 (975 without
    the warm-up), docvqa (1200+1180+1220+1200)/4 = 1200; shirg_fixed and pool_k 912; random_k_768 768.
    token ratios vs lavida: chartqa 912/980 = 0.93, docvqa 912/1200 = 0.76; vs shirg_fixed: pool_k 1.00 (matched).
    peak memory (GPU, max over the task's samples): lavida chartqa 2.00 GB, docvqa 1.20 GB (pooled: 2.00 for both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import pytest

from shirg_eval.cli import leaderboard as lbm
from shirg_eval.report import table
from shirg_eval.report.render import render
from shirg_eval.report.results import load_task_runs

sys.path.insert(0, str(Path(__file__).parent / "data"))
from lmms_fixture import sample_row, write_run  # noqa: E402

STAMP = "20250301_100000"
# variant -> task -> [(latency ms, warm-up, visual tokens, peak GB)] per doc
RUNS = {
    "lavida": {
        "chartqa_200": [(900, True, 1000, 2.0), (100, False, 980, 1.5), (120, False, 980, 1.5),
                        (140, False, 960, 1.5), (160, False, 980, 1.5)],
        "docvqa_200": [(700, True, 1200, 1.2), (300, False, 1180, 1.1), (340, False, 1220, 1.1),
                       (320, False, 1200, 1.1)],
    },
    "shirg_fixed": {
        "chartqa_200": [(800, True, 912, 1.9), (200, False, 912, 1.4), (260, False, 912, 1.4),
                        (300, False, 912, 1.4), (240, False, 912, 1.4)],
        "docvqa_200": [(650, True, 912, 1.0), (330, False, 912, 1.0), (350, False, 912, 1.0),
                       (340, False, 912, 1.0)],
    },
    "pool_k": {
        "chartqa_200": [(150, False, 912, 1.3), (110, False, 912, 1.3), (900, True, 912, 1.3),
                        (130, False, 912, 1.3), (170, False, 912, 1.3)],
    },
    "random_k_768": {
        "chartqa_200": [(500, True, 768, 1.2)] + [(100, False, 768, 1.2)] * 4,
    },
}
MODEL_ARGS = {"pool_k": "k=912", "random_k_768": "k=768"}
CELLS = {"lavida": None, "shirg_fixed": None, "pool_k": "shirg_fixed", "random_k_768": "shirg_fixed"}


def _write(root: Path, cell: str, runs: dict, meta_extra: dict | None = None, stamp: str = STAMP) -> None:
    variant = cell.removesuffix("_768")
    margs = ",".join(filter(None, ["pretrained=/models/tiny", MODEL_ARGS.get(cell, "")]))
    meta = {"variant": variant, "pretrained": "/models/tiny", "dtype": "float32", "kv_dtype": "auto",
            **(meta_extra or {})}
    rows = {}
    for task, docs in runs.items():
        rows[task] = [
            sample_row(task, i, f"{task}-{i}", "a", "a" if i % 2 else "b", float(i % 2),
                       {"latency_ms": float(lat), "prefill_ms": 1.0, "denoise_ms": 1.0, "peak_mem_gb": mem,
                        "peak_mem_kind": "cuda_max_allocated", "visual_tokens": tok, "warmup": warm}, meta)
            for i, (lat, warm, tok, mem) in enumerate(docs)
        ]
    write_run(root / cell, variant, margs, stamp, rows, limit=None)
    (root / cell / "cell.json").write_text(json.dumps({"cell": cell, "controls": CELLS[cell]}))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    for cell, runs in RUNS.items():
        _write(tmp_path / "runs", cell, runs)
    return tmp_path / "runs"


def _row(lb: table.Leaderboard, label: str) -> dict:
    return lb.raw.set_index("label").loc[label].to_dict()


def test_per_task_p50_ratio_tokens_and_memory_by_hand(folder: Path) -> None:
    lb = table.build_leaderboard(load_task_runs([folder]), baseline="lavida", n_boot=50)
    lav, sf, pk = _row(lb, "lavida"), _row(lb, "shirg_fixed"), _row(lb, "pool_k[k=912]")
    assert (lav["chartqa_200.latency_p50_ms"], lav["docvqa_200.latency_p50_ms"]) == (130.0, 320.0)
    assert (sf["chartqa_200.latency_p50_ms"], sf["docvqa_200.latency_p50_ms"]) == (250.0, 340.0)
    assert sf["chartqa_200.latency_ratio"] == pytest.approx(250 / 130)
    assert sf["docvqa_200.latency_ratio"] == pytest.approx(340 / 320)
    assert pk["chartqa_200.latency_p50_ms"] == 140.0 and pk["chartqa_200.latency_ratio"] == pytest.approx(130 / 140)
    assert (lav["chartqa_200.visual_tokens"], lav["docvqa_200.visual_tokens"]) == (980.0, 1200.0)
    assert sf["chartqa_200.tokens_ratio"] == pytest.approx(912 / 980)
    assert sf["docvqa_200.tokens_ratio"] == pytest.approx(912 / 1200)
    assert (lav["chartqa_200.peak_mem_gb"], lav["docvqa_200.peak_mem_gb"]) == (2.0, 1.2)
    disp = lb.display.set_index("variant")
    assert disp.loc["shirg_fixed", "chartqa_200 latency ×base"] == "1.92×"
    assert disp.loc["shirg_fixed", "docvqa_200 latency ×base"] == "1.06×"
    assert disp.loc["pool_k", "chartqa_200 latency ×base"] == "0.93×†" and "† = the two rows timed" in lb.footnote
    assert disp.loc["shirg_fixed", "chartqa_200 tokens ×base"] == "0.93×"  # not matched: no mark
    assert disp.loc["lavida", "docvqa_200 peak mem"] == "1.20 GB (GPU alloc)"


def test_matched_budget_only_for_equal_token_means(folder: Path) -> None:
    lb = table.build_leaderboard(load_task_runs([folder]), baseline="shirg_fixed", n_boot=50)
    disp = lb.display.set_index("variant")
    assert disp.loc["pool_k", "chartqa_200 tokens ×base"] == "1.00× (matched budget)"
    assert disp.loc["random_k", "chartqa_200 tokens ×base"] == "0.84×"
    assert disp.loc["lavida", "docvqa_200 tokens ×base"] == "1.32×"
    # the controls declared by the sweep cells: one row per (reference, control, task)
    pairs = lb.pairs_raw.set_index("control")
    assert pairs.loc["pool_k[k=912]", "reference"] == "shirg_fixed"
    assert bool(pairs.loc["pool_k[k=912]", "matched_budget"]) is True
    assert bool(pairs.loc["random_k", "matched_budget"]) is False
    assert pairs.loc["random_k", "tokens_ratio"] == pytest.approx(912 / 768)
    md = render(lb, "markdown")
    assert "Matched-budget controls" in md and "| 912 / 912" in md and "NOT matched" in md


def test_runs_of_another_base_are_separate_rows(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the same cell re-run later in bf16 with an int8 KV cache: a second row, not "newest wins"
    _write(folder, "lavida", RUNS["lavida"], {"dtype": "bfloat16", "kv_dtype": "int8"}, stamp="20250302_100000")
    runs = load_task_runs([folder])
    lav = sorted(r.key.base for r in runs if r.variant == "lavida" and r.task == "chartqa_200")
    assert lav == ["pretrained=/models/tiny,dtype=bfloat16,kv_dtype=int8",
                   "pretrained=/models/tiny,dtype=float32"]  # the default KV storage is left out
    assert lbm.main([str(folder), "--baseline", "lavida"]) == 2
    assert "matches several rows" in capsys.readouterr().err
    lb = table.build_leaderboard(runs, baseline="lavida {dtype=float32,kv_dtype=auto}", n_boot=50)
    assert list(lb.display["base"][:2]) == ["dtype=bfloat16,kv_dtype=int8", "dtype=float32,kv_dtype=auto"]
    assert lb.baseline == "lavida {dtype=float32,kv_dtype=auto}"
    assert list(lb.display["chartqa_200 Δ vs base"][:2]) == ["+0.0 [+0.0, +0.0]", "(baseline)"]
    assert "all rows: pretrained=/models/tiny" in lb.footnote


def test_plot_labels_are_row_labels_in_a_legend(folder: Path, tmp_path: Path) -> None:
    lb = table.build_leaderboard(load_task_runs([folder]), baseline="lavida", n_boot=50)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        from shirg_eval.report.plots import write_plots

        files, _ = write_plots(lb, tmp_path / "plots")
    svg = (tmp_path / "plots" / "accuracy_vs_latency_chartqa_200.svg").read_text()
    assert "@nan" not in svg and ">nan<" not in svg
    for label in ("lavida", "shirg_fixed", "pool_k[k=912]", "random_k"):
        assert f">{label}<" in svg
    # per task: the docvqa plot has only the two rows that ran docvqa
    doc_svg = (tmp_path / "plots" / "accuracy_vs_latency_docvqa_200.svg").read_text()
    assert ">shirg_fixed<" in doc_svg and ">pool_k[k=912]<" not in doc_svg
    assert {p.name for p in files} >= {"peak_memory.png", "accuracy_vs_tokens_docvqa_200.png"}
