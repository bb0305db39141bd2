"""Writes lmms-eval 0.7.3-shaped output folders (results.json + samples jsonl) for tests.

Used by make_results_fixtures.py (the checked-in fixtures under tests/data/results) and by fake_lmms_eval.py
(the stand-in command of the sweep tests).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

TASK_METRICS = {
    "chartqa_200": ("relaxed_overall", "exact_match", "cider"),
    "docvqa_200": ("anls", "exact_match", "cider"),
    "infovqa_200": ("anls", "exact_match", "cider"),
    "textvqa_200": ("vqa_accuracy", "exact_match", "cider"),
    "ocrbench_200": ("ocrbench_mean_score", "exact_match", "cider"),
}


def sample_row(
    task: str,
    doc_id: int,
    uid: str,
    target: str,
    pred: str,
    score: float,
    eff: dict[str, Any],
    run_meta: dict[str, Any],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "doc_id": doc_id,
        "target": target,
        "filtered_resps": pred,
        "token_counts": [None],
        "doc_hash": hashlib.sha256(f"{task}/{uid}".encode()).hexdigest(),
        "input": "<image>\nAnswer the question using a single word or phrase.",
    }
    if task.startswith("chartqa"):
        human = doc_id % 2 == 0
        row["relaxed_overall"] = score
        # lmms-eval's chartqa returns only the split a doc belongs to; ours writes None for the other
        row["relaxed_human_split"] = score if human else None
        row["relaxed_augmented_split"] = None if human else score
    else:
        row[TASK_METRICS.get(task, ("anls",))[0]] = score
    row["exact_match"] = float(pred.lower() == target.lower())
    row["cider"] = {"pred": pred, "refs": [target]}
    row.update(eff)
    row["shirg_uid"] = uid
    row["run_meta"] = run_meta
    return row


def write_run(
    out: Path,
    model: str,
    model_args: str,
    stamp: str,
    rows_by_task: dict[str, list[dict[str, Any]]],
    limit: int | None,
) -> Path:
    """Write ``out/<model_name_sanitized>/<stamp>_results.json`` and one samples file per task."""
    args = dict(p.split("=", 1) for p in model_args.split(",") if "=" in p)
    name = args.get("pretrained", "")
    parts = name.split("/")
    sanitized = "__".join(parts[-2:]) if len(parts) > 1 else parts[-1]
    folder = out / (sanitized or "unknown")
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for task, rows in rows_by_task.items():
        agg: dict[str, Any] = {"alias": task}
        for m in TASK_METRICS[task]:
            if m == "cider":
                agg["cider,none"] = (
                    None  # filled by the corpus scorer in real runs; readers must not rely on it
                )
                continue
            vals = [r[m] for r in rows]
            agg[f"{m},none"] = sum(vals) / len(vals)
            agg[f"{m}_stderr,none"] = statistics.stdev(vals) / len(vals) ** 0.5 if len(vals) > 1 else "N/A"
        lat = [r["latency_ms"] for r in rows if not r["warmup"]] or [r["latency_ms"] for r in rows]
        agg["latency_ms_p50,none"] = statistics.median(lat)
        agg["peak_mem_gb,none"] = max(r["peak_mem_gb"] for r in rows)
        agg["visual_tokens,none"] = sum(r["visual_tokens"] for r in rows) / len(rows)
        results[task] = agg
        with (folder / f"{stamp}_samples_{task}.jsonl").open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    payload = {
        "results": results,
        "group_subtasks": {t: [] for t in rows_by_task},
        "configs": {
            t: {"task": t, "dataset_path": "shirg_eval/synthetic", "test_split": "test"} for t in rows_by_task
        },
        "versions": {t: 1.0 for t in rows_by_task},
        "n-shot": {t: 0 for t in rows_by_task},
        "higher_is_better": {t: {m: True for m in TASK_METRICS[t]} for t in rows_by_task},
        "n-samples": {t: {"original": 200, "effective": len(r)} for t, r in rows_by_task.items()},
        "config": {
            "model": model,
            "model_args": model_args,
            "model_backend": "shirg_eval.harness.model.ShirgLavida (generation)",
            "batch_size": "1",
            "device": "cpu",
            "use_cache": None,
            "limit": limit,
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": "0000000",
        "lmms_eval_version": "0.7.3",
        "date": stamp,
        "task_hashes": {t: "abc" for t in rows_by_task},
        "model_source": model,
        "model_name": name,
        "model_name_sanitized": sanitized,
    }
    path = folder / f"{stamp}_results.json"
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path
