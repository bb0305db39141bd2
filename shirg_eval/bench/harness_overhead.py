"""Harness overhead: the ``lmms_eval`` command against direct model calls on the same documents.

Both sides decode the same PNGs, build the same prompts and answer with the same variant and generation length;
the harness side is timed per request inside the lmms-eval model (``run_meta.request_ms``), the direct side per
call around :meth:`ShirgPipeline.answer`. lmms-eval's one-off start-up (imports, dataset load) is reported apart.
Warm-up samples are excluded on both sides. Target: overhead <= 3 %.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any


def measure(variant: str = "shirg_fixed", n_docs: int = 8, pretrained: str | None = None,
            gen_length: int = 16) -> dict[str, Any]:
    from PIL import Image

    from ..data.synthetic import make_chartqa, write_dataset
    from ..model.sampler import GenerationConfig
    from ..model.tiny import make_tiny_checkpoint
    from ..pipeline import ShirgPipeline

    work = Path(tempfile.mkdtemp(prefix="shirg-harness-"))
    if pretrained is None:
        pretrained = str(make_tiny_checkpoint(work / "tiny", seed=0))
    records = make_chartqa(n_docs, seed=0)
    data = write_dataset(records, work / "chartqa", "parquet")
    env = dict(os.environ, SHIRG_CHARTQA_PATH=str(data), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    # ``python -m`` rather than the console script: also runs from a source tree or a --target install
    cmd = [sys.executable, "-m", "shirg_eval.cli.lmms_eval", "--model", variant, "--model_args",
           f"pretrained={pretrained},gen_length={gen_length},pictures=0", "--tasks", "chartqa_200",
           "--limit", str(n_docs), "--output_path", str(work / "out"), "--log_samples"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    harness_wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"lmms_eval failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    samples = next((work / "out").rglob("*_samples_chartqa_200.jsonl"))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    harness = {r["shirg_uid"]: r["run_meta"]["request_ms"] for r in rows if not r["warmup"]}
    prompts = {r["shirg_uid"]: r["input"] for r in rows}

    pipe = ShirgPipeline(pretrained, variant)
    by_text = {(rec["question"]): rec for rec in records}
    direct: dict[str, float] = {}
    config = GenerationConfig(gen_length=gen_length)
    for i, row in enumerate(rows):
        question = row["input"]
        record = next(rec for q, rec in by_text.items() if question.startswith(q))
        t0 = time.perf_counter()
        image = Image.open(io.BytesIO(record["image"])).convert("RGB")
        pipe.answer(image, question, config, sample_key=f"chartqa_200/{row['shirg_uid']}", query=record["question"])
        if i > 0 or len(rows) == 1:
            direct[row["shirg_uid"]] = (time.perf_counter() - t0) * 1e3
    common = sorted(set(harness) & set(direct))
    h = sum(harness[u] for u in common)
    d = sum(direct[u] for u in common)
    return {
        "variant": variant, "docs": len(common), "harness_ms_per_sample": h / len(common),
        "direct_ms_per_sample": d / len(common), "overhead": h / d - 1.0,
        "overhead_ms_per_sample": (h - d) / len(common), "device": pipe.describe()["device"],
        "dtype": pipe.describe()["dtype"],
        "harness_median_ms": median(harness[u] for u in common), "direct_median_ms": median(direct[u] for u in common),
        "lmms_eval_wall_s": harness_wall, "prompts_checked": len(prompts),
    }


def report(result: dict[str, Any]) -> str:
    verdict = "PASS" if result["overhead"] <= 0.03 else "MISS"
    return (f"harness overhead ({result['variant']}, {result['docs']} docs, warm-up excluded, "
            f"{result.get('device', '?')} {result.get('dtype', '')}): "
            f"lmms_eval {result['harness_ms_per_sample']:.1f} ms/sample vs direct {result['direct_ms_per_sample']:.1f} "
            f"ms/sample -> {result['overhead'] * 100:+.1f}% ({result.get('overhead_ms_per_sample', 0.0):+.2f} ms "
            f"per sample) [{verdict} target <= +3%]; "
            f"lmms_eval start-up and I/O: {result['lmms_eval_wall_s']:.1f} s wall for the whole command")
