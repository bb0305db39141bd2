"""Stand-in for the ``lmms_eval`` command in the sweep tests: writes a fake results.json + samples.

Every invocation appends its argv (JSON) to $FAKE_LMMS_LOG so tests can count runs. The model named in
$FAKE_LMMS_FAIL exits 1 without results; the model named in $FAKE_LMMS_INTERRUPT sends SIGINT to the sweep
(its parent) and exits, as if the user pressed Ctrl-C while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lmms_fixture import sample_row, write_run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--model_args", default="")
    p.add_argument("--tasks", required=True)
    p.add_argument("--output_path", required=True)
    p.add_argument("--log_samples", action="store_true")
    p.add_argument("--limit", type=int)
    a = p.parse_args()
    with open(os.environ["FAKE_LMMS_LOG"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": sys.argv[1:], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n")
    if a.model == os.environ.get("FAKE_LMMS_INTERRUPT"):
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(5)  # the sweep terminates us
        return 1
    if a.model == os.environ.get("FAKE_LMMS_FAIL"):
        print("RuntimeError: fake failure", file=sys.stderr)
        return 1
    n = a.limit or 4
    meta = {"variant": a.model, "seed": 0}
    rows = {}
    for t in a.tasks.split(","):
        eff = {
            "latency_ms": 10.0,
            "prefill_ms": 4.0,
            "denoise_ms": 6.0,
            "peak_mem_gb": 0.5,
            "peak_mem_kind": "cpu_peak_rss",
            "visual_tokens": 64,
            "warmup": False,
        }
        rows[t] = [
            sample_row(t, i, f"{t}-{i:03d}", "a", "a" if i % 2 else "b", float(i % 2), eff, meta)
            for i in range(n)
        ]
    write_run(Path(a.output_path), a.model, a.model_args, time.strftime("%Y%m%d_%H%M%S"), rows, a.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
