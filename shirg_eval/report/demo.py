"""The steps of ``shirg-demo`` (``make demo``; ``shirg_eval/cli/demo.py`` describes the whole run): pick the
checkpoint, answer one held-out chart with every variant, run the demo sweep through the real ``lmms_eval`` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "models" / "reference"
REFERENCE_LORA = REPO / "models" / "reference-lora-shirg_fixed"


def _configs_dir() -> Path:
    import shirg_eval.configs

    return Path(shirg_eval.configs.__file__).resolve().parent


def answer_table(checkpoint: Path, lora: Path | None = None) -> str:
    """One held-out chart of the reading test split, answered by every roadmap variant (and the LoRA, if any)."""
    from ..data.reading import make_item, reading_task
    from ..model.lavida import LavidaModel
    from ..model.sampler import GenerationConfig
    from ..model.tokenizer import load_tokenizer
    from ..pipeline import ShirgPipeline

    item = make_item("chart", 7, split="test")
    task = reading_task("chart")
    prompt = task.prompt(item.question)
    tokenizer = load_tokenizer(checkpoint)
    model = LavidaModel.from_pretrained(checkpoint)
    rows = []
    runs = [(v, None) for v in ("lavida", "lavida_384", "lavida_672", "shirg_fixed", "pool_k", "random_k")]
    if lora is not None:
        runs.append(("shirg_fixed", lora))
    for name, adapter in runs:
        # a LoRA is merged into the weights it loads into: give it its own copy
        pipe = ShirgPipeline(str(checkpoint), name, model=LavidaModel.from_pretrained(checkpoint) if adapter else model,
                             tokenizer=tokenizer, lora=str(adapter) if adapter else None,
                             **({"k": 912} if name == "pool_k" else {"scaffold": True} if name == "random_k" else {}))
        pipe.answer(item.image, prompt, GenerationConfig(gen_length=task.max_new_tokens), query=item.question)  # warm-up
        ans = pipe.answer(item.image, prompt, GenerationConfig(gen_length=task.max_new_tokens), query=item.question)
        t = ans.timings_ms
        rows.append([name + (" + LoRA" if adapter else ""), ans.visual.n_tokens, f"{t['vision_ms']:.0f}",
                     f"{t['prefill_ms']:.0f}", f"{t['denoise_ms']:.0f}", f"{t['latency_ms']:.0f}", repr(ans.text[:24])])
    header = ["variant", "visual tokens", "vision ms", "prefill ms", "denoise ms", "latency ms", "answer"]
    return (f"Q: {item.question}  (answer: {item.answer!r}; image {item.image.size[0]}x{item.image.size[1]}, "
            f"held-out test item)\n" + tabulate(rows, header, tablefmt="github"))


def reference_lora(checkpoint: Path) -> Path | None:
    """The SHIRG LoRA committed beside the reference model, when ``checkpoint`` is that model and it has one."""
    if checkpoint == REFERENCE.resolve() and (REFERENCE_LORA / "shirg_adapter.json").is_file():
        return REFERENCE_LORA
    return None


def run_sweep(out: Path, checkpoint: Path, lora: Path | None, limit: int | None = None) -> int:
    """The demo sweep through the real ``lmms_eval`` command; returns its exit status.

    The reading sets are rendered once into ``out/cache`` (400 test documents each; the sweep reads ``limit``).
    """
    env = dict(os.environ, SHIRG_CACHE=str(out / "cache"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [*sweep_command(), str(sweep_config(out, lora)), "--model_args", f"pretrained={checkpoint}",
           "--output-root", str(out / "sweep")]
    if limit:
        cmd += ["--limit", str(limit)]
    print(f"\n[demo] roadmap sweep on the hard reading sets through the real lmms_eval command:\n  {' '.join(cmd)}",
          flush=True)
    return subprocess.call(cmd, env=env, cwd=REPO)  # the sweep's relative paths (LoRA) are the repo's


def sweep_config(out: Path, lora: Path | None) -> Path:
    """``demo.yaml``; with the reference model's LoRA, a copy in ``out`` that adds its ``shirg_fixed`` cell."""
    import yaml

    config = _configs_dir() / "sweeps" / "demo.yaml"
    if lora is None:
        return config
    spec = yaml.safe_load(config.read_text(encoding="utf-8"))
    spec["cells"].append({"name": "shirg_fixed_lora", "model": "shirg_fixed", "lora": str(lora)})
    written = out / "demo_sweep.yaml"
    written.write_text(f"# {config.name} + the SHIRG LoRA committed beside the reference model\n"
                       + yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return written


def pick_checkpoint(pretrained: str | None, out: Path) -> Path | None:
    """``--pretrained``, else the committed reference model, else a tiny random LaViDa in ``out`` (said loudly)."""
    if pretrained is not None:
        checkpoint = Path(pretrained).resolve()
        if not (checkpoint / "config.json").is_file():
            print(f"[demo] no checkpoint at {checkpoint} (no config.json): pass --pretrained DIR of a LaViDa "
                  "checkpoint (`shirg-train-reference` trains the reference model, `shirg-make-tiny DIR` writes a "
                  "random tiny one)", file=sys.stderr)
            return None
        return checkpoint
    if (REFERENCE / "config.json").is_file():
        return REFERENCE.resolve()
    from ..model.tiny import make_tiny_checkpoint

    checkpoint = out / "lavida-tiny"
    if not all((checkpoint / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json")):
        make_tiny_checkpoint(checkpoint, seed=0)  # (again, if an earlier demo was stopped while writing it)
    print(f"[demo] no trained reference model in {REFERENCE}: using a tiny LaViDa with RANDOM weights "
          f"({checkpoint}). Its accuracies are near 0 and mean nothing; visual tokens, budgets and latency ratios "
          "are real. `shirg-train-reference` trains the reference model.", flush=True)
    return checkpoint


def sweep_command() -> list[str]:
    """The ``shirg-sweep`` script beside this interpreter, else the same command through ``python -m``."""
    candidate = Path(sys.executable).with_name("shirg-sweep")
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", "shirg_eval.cli.sweep"]
