"""lmms-eval's own tasks (textvqa_val, infovqa_val) with our models: question matching, the efficiency side
file, the leaderboard join; and the five OCR/doc tasks end to end in one lmms_eval run on odd images."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shirg_eval.harness.efficiency import EfficiencyRecord
from shirg_eval.harness.side_efficiency import (
    SideEfficiencyLog,
    join_side_rows,
    place_beside_results,
    side_file,
)
from shirg_eval.query import selection_query

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def test_question_matches_ignoring_case() -> None:
    # lmms-eval's textvqa_doc_to_text capitalises the question; selection gets it as the prompt spells it
    prompt = "What does the sign say?\nAnswer the question using a single word or phrase."
    assert selection_query({"question": "what does the sign say?"}, prompt, "t") == ("What does the sign say?",
                                                                                     "question")
    assert selection_query({"question": "  what is written in the image?\n"}, "what is written in the image?",
                           "o") == ("what is written in the image?", "question")  # OCRBench strips it
    assert selection_query({"question": "a+b (c)?"}, "A+B (c)?", "r")[1] == "question"  # not a regex
    assert selection_query({"question": "unrelated"}, prompt, "u") == (prompt, "prompt")


def _record(ms: float, warm: bool = False) -> EfficiencyRecord:
    return EfficiencyRecord(latency_ms=ms, prefill_ms=1.0, denoise_ms=ms - 1, peak_mem_gb=0.5,
                            peak_mem_kind="cpu_peak_rss", visual_tokens=912, warmup=warm,
                            meta={"variant": "shirg_fixed"})


def test_side_file_staging_placement_and_join(tmp_path: Path) -> None:
    staging = tmp_path / ".shirg_efficiency"
    SideEfficiencyLog(staging, rank=0).add("textvqa_val", "validation", 0, _record(10.0, warm=True))
    SideEfficiencyLog(staging, rank=1).add("textvqa_val", "validation", 1, _record(20.0))
    SideEfficiencyLog(staging, rank=0).add("textvqa_val", "validation", 0, _record(11.0))  # a rerun: last wins
    results = tmp_path / "model" / "20260101_000000_results.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"results": {"textvqa_val": {}, "docvqa_200": {}}}))
    written = place_beside_results(staging, [results])
    assert written == [results.with_name("20260101_000000_shirg_efficiency_textvqa_val.jsonl")]
    assert side_file(results, "textvqa_val") == written[0] and not list(staging.glob("*.jsonl"))
    samples = [{"doc_id": 0, "exact_match": 1.0}, {"doc_id": 1, "exact_match": 0.3}, {"doc_id": 2}]
    assert join_side_rows(samples, written[0], "textvqa_val") == 2
    assert samples[0]["latency_ms"] == 11.0 and samples[1]["visual_tokens"] == 912
    assert samples[0]["run_meta"] == {"variant": "shirg_fixed"} and "latency_ms" not in samples[2]
    ours = [{"doc_id": 0, "latency_ms": 5.0, "visual_tokens": 900}]  # our task's rows keep their own numbers
    assert join_side_rows(ours, written[0], "textvqa_val") == 0 and ours[0]["latency_ms"] == 5.0


def _own_task_copy(folder: str, yaml_names: list[str], task: str, data: Path, out: Path) -> None:
    """lmms-eval's task folder as installed, with only the task name and the dataset pointed at a local parquet."""
    import lmms_eval

    src = Path(lmms_eval.__file__).parent / "tasks" / folder
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    template = next(out.glob("_default_template*"))
    text = template.read_text()
    text = re.sub(r"^dataset_path: .*$", "dataset_path: parquet", text, flags=re.M)
    text = re.sub(r"^dataset_name: .*$\n", "", text, flags=re.M)
    text = re.sub(r"^dataset_kwargs:\n(  .*\n)*", "", text, flags=re.M)
    text += f"\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
    template.write_text(text)
    for name in yaml_names:
        body = (out / name).read_text()
        (out / name).write_text(re.sub(r'^task: .*$', f'task: "{task}"', body, count=1, flags=re.M))
    for f in out.glob("*.yaml"):  # only the task under test: the others would read the hub
        if f.name not in yaml_names:
            f.unlink()


@pytest.mark.slow
def test_five_tasks_one_run_with_side_file_efficiency(tiny_checkpoint, tmp_path: Path) -> None:
    from test_ocr_tasks import write_odd_rows

    from shirg_eval.report.results import load_task_runs
    from shirg_eval.report.table import build_leaderboard

    data = {kind: write_odd_rows(kind, tmp_path / "data" / kind) for kind in ("infovqa", "textvqa", "ocrbench")}
    include = tmp_path / "own_tasks"
    _own_task_copy("textvqa", ["textvqa_val.yaml"], "textvqa_val_local", data["textvqa"], include / "textvqa")
    _own_task_copy("infovqa", ["infovqa_val.yaml"], "infovqa_val_local", data["infovqa"], include / "infovqa")
    env = dict(os.environ, SHIRG_INFOVQA_PATH=str(data["infovqa"]), SHIRG_TEXTVQA_PATH=str(data["textvqa"]),
               SHIRG_OCRBENCH_PATH=str(data["ocrbench"]), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    for var in ("SHIRG_JOURNAL_DIR", "SHIRG_EFFICIENCY_DIR", "SHIRG_PICTURE_DIR"):
        env.pop(var, None)
    tasks = ["infovqa_200", "textvqa_200", "ocrbench_200", "textvqa_val_local", "infovqa_val_local"]
    out = tmp_path / "out"
    command = [str(BIN / "lmms_eval"), "--model", "shirg_fixed", "--model_args",
               f"pretrained={tiny_checkpoint},gen_length=8,pictures=0", "--tasks", ",".join(tasks),
               "--include_path", str(include), "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results_path = next(out.rglob("*_results.json"))
    results = json.loads(results_path.read_text())["results"]
    assert {"anls,none", "latency_ms_p50,none"} <= set(results["infovqa_200"])
    assert "vqa_accuracy,none" in results["textvqa_200"] and "ocrbench_mean_score,none" in results["ocrbench_200"]
    assert "exact_match,none" in results["textvqa_val_local"] and "anls,none" in results["infovqa_val_local"]
    for task in ("textvqa_val_local", "infovqa_val_local"):
        side = side_file(results_path, task)
        rows = [json.loads(line) for line in side.read_text().splitlines()]
        assert sorted(r["doc_id"] for r in rows) == list(range(7)), task  # every odd-image row ran
        assert all(r["visual_tokens"] == 912 and r["latency_ms"] > 0 for r in rows)
    textvqa_rows = [json.loads(line) for line in side_file(results_path, "textvqa_val_local").read_text().splitlines()]
    assert {r["meta"]["selection_query"] for r in textvqa_rows} == {"question"}  # capitalised, still matched
    runs = load_task_runs([out])
    assert sorted(r.task for r in runs) == sorted(tasks)
    for run in runs:
        assert len(run.samples) == 7, run.task
        assert all(row["latency_ms"] is not None and row["visual_tokens"] == 912 for row in run.samples), run.task
    board = build_leaderboard(runs)
    for task in tasks:
        assert board.raw[f"{task}.visual_tokens"].iloc[0] == 912 and board.raw[f"{task}.n"].iloc[0] == 7
    assert "textvqa_val_local logs no CIDEr" in board.footnote and "infovqa_val_local" in board.footnote
    assert board.headlines["textvqa_val_local"][0] == "exact_match"
    assert board.headlines["textvqa_200"][0] == "vqa_accuracy"
    for run in runs:  # our tasks condition selection on shirg_question; lmms-eval's on the question found
        expected = "question" if run.task.endswith("_local") else "shirg_question"
        assert {row["run_meta"]["selection_query"] for row in run.samples} == {expected}, run.task

    # Rerun: every answer comes from the journal (lmms-eval's own tasks too), the side files are written again.
    import time

    time.sleep(1.1)  # lmms-eval's date_id has one-second resolution
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    newest = sorted(out.rglob("*_results.json"))[-1]
    assert newest != results_path
    for task in ("textvqa_val_local", "infovqa_val_local"):
        rows = [json.loads(line) for line in side_file(newest, task).read_text().splitlines()]
        assert len(rows) == 7 and all(r["meta"].get("resumed") for r in rows), task
    samples = newest.with_name(newest.name.replace("_results.json", "_samples_ocrbench_200.jsonl"))
    ours = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(ours) == 7 and all(r["run_meta"].get("resumed") for r in ours)
