"""``make demo``: the full offline benchmark on the embedded default (a tiny random LaViDa).

1. render synthetic ChartQA/DocVQA stand-ins, 2. build the tiny checkpoint, 3. answer one bundled chart with
every variant (answer, visual tokens, timings), 4. run the roadmap sweep through the real ``lmms_eval``
command, 5. print the leaderboard and write plots. Accuracy of a random model is meaningless; token counts and
latency ratios are real.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate


def _configs_dir() -> Path:
    import shirg_eval.configs

    return Path(shirg_eval.configs.__file__).resolve().parent


def answer_table(checkpoint: Path, image_path: Path) -> str:
    from PIL import Image

    from .model.lavida import LavidaModel
    from .model.sampler import GenerationConfig
    from .model.tiny import load_tokenizer
    from .pipeline import ShirgPipeline
    from .selection.presets import VARIANTS

    model = LavidaModel.from_pretrained(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    image = Image.open(image_path)
    question = "Which category has the highest value?"
    rows = []
    for name in VARIANTS:
        pipe = ShirgPipeline(str(checkpoint), name, model=model, tokenizer=tokenizer)
        pipe.answer(image, question, GenerationConfig(gen_length=16))  # warm-up
        ans = pipe.answer(image, question, GenerationConfig(gen_length=16))
        t = ans.timings_ms
        rows.append([name, ans.visual.n_tokens, f"{t['vision_ms']:.0f}", f"{t['prefill_ms']:.0f}",
                     f"{t['denoise_ms']:.0f}", f"{t['latency_ms']:.0f}", repr(ans.text[:24])])
    header = ["variant", "visual tokens", "vision ms", "prefill ms", "denoise ms", "latency ms", "answer (random weights)"]
    return f"Q: {question}\n" + tabulate(rows, header, tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shirg-demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="where data, checkpoint, runs and plots go")
    parser.add_argument("--limit", type=int, default=8, help="documents per task in the sweep")
    parser.add_argument("--n-docs", type=int, default=200, help="synthetic documents per task to render")
    parser.add_argument("--skip-sweep", action="store_true", help="only the single-image answers")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    from .data.synthetic import main as synth_main
    from .model.tiny import make_tiny_checkpoint

    data = out / "data"
    if not (data / "chartqa" / "test.parquet").exists() or not (data / "docvqa" / "validation.parquet").exists():
        print(f"[demo] rendering {args.n_docs} synthetic ChartQA + DocVQA documents -> {data}", flush=True)
        synth_main(["--out", str(data), "--n", str(args.n_docs), "--what", "chartqa,docvqa"])
    checkpoint = out / "lavida-tiny"
    if not (checkpoint / "model.safetensors").exists():
        make_tiny_checkpoint(checkpoint, seed=0)
    print(f"[demo] tiny LaViDa checkpoint: {checkpoint}", flush=True)

    from .data.synthetic import make_chartqa

    image_path = out / "demo_chart.png"
    if not image_path.exists():
        image_path.write_bytes(make_chartqa(n=1, seed=123)[0]["image"])
    print("\n[demo] one chart, every variant (tiny random model: the answer is noise; tokens and time are real)")
    print(answer_table(checkpoint, image_path), flush=True)
    if args.skip_sweep:
        return 0

    env = dict(os.environ, SHIRG_CHARTQA_PATH=str(data / "chartqa" / "test.parquet"),
               SHIRG_DOCVQA_PATH=str(data / "docvqa" / "validation.parquet"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    sweep = shutil_which("shirg-sweep")
    cmd = [*sweep, str(_configs_dir() / "sweeps" / "demo.yaml"), "--model_args", f"pretrained={checkpoint}",
           "--output-root", str(out / "sweep"), "--limit", str(args.limit)]
    print(f"\n[demo] roadmap sweep through the real lmms_eval command ({args.limit} docs per task):\n  {' '.join(cmd)}",
          flush=True)
    code = subprocess.call(cmd, env=env)
    print(f"\n[demo] finished in {time.time() - started:.0f} s; leaderboard: {out / 'sweep' / 'leaderboard.md'}, "
          f"plots: {out / 'sweep' / 'plots'}")
    return code


def shutil_which(name: str) -> list[str]:
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", "shirg_eval.report.sweep"]


if __name__ == "__main__":
    sys.exit(main())
