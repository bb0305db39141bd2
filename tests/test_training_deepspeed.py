"""The trainer through the real ``deepspeed`` launcher on CPU (gloo): ZeRO-2 and ZeRO-3, 1 and 2 ranks.

On this CPU machine ``deepspeed --num_gpus N train/lora.py ...`` starts N CPU ranks (DeepSpeed's CPU accelerator);
the launcher appends ``--local_rank=N``. Slow: each launch imports torch/DeepSpeed per rank.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import TINY_YAML, make_data, metric_steps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEEPSPEED = Path(sys.executable).with_name("deepspeed")

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ranks: int, ckpt: Path, data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(DEEPSPEED), "--num_gpus", str(ranks), "--master_port", str(_port()), "train/lora.py",
           "--config", str(TINY_YAML), "--pretrained", str(ckpt), "--data.json", str(data),
           "--data.image_folder", str(data.parent), "--output_dir", str(out), "--progress", "false", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PATH"] = f"{DEEPSPEED.parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_adapter(ckpt_dir: Path, r: int, vision: int = 48, d: int = 64) -> None:
    """Every LoRA tensor non-empty with its Linear's shape: A [r, in], B [out, r]."""
    state = load_file(str(ckpt_dir / "adapter_model.safetensors"))
    assert state and all(t.numel() > 0 for t in state.values())
    shapes = {"mm_projector.0": (vision, d), "mm_projector.2": (d, d), "self_attn": (vision, vision)}
    for key, tensor in state.items():
        fan_in, fan_out = next(v for k, v in shapes.items() if k in key)
        expected = (r, fan_in) if "lora_A" in key else (fan_out, r)
        assert tuple(tensor.shape) == expected, (key, tuple(tensor.shape))
        assert torch.isfinite(tensor).all()
    assert any("lora_B" in k and state[k].abs().sum() > 0 for k in state)  # trained, not the zero init


def test_zero2_one_rank_shirg_path(tiny_checkpoint, tmp_path):
    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    proc = launch(1, tiny_checkpoint, data, out, "--deepspeed", "configs/deepspeed/zero2.json",
                  "--variant", "shirg_fixed", "--mixed_resolution", "true", "--max_steps", "2", "--save_steps", "1", "--micro_batch_size", "1")
    assert "trainable params: 6,528" in proc.stdout
    assert [r["step"] for r in metric_steps(out)] == [1, 2]
    check_adapter(out / "checkpoint-2", r=8)
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["zero_stage"] == 2 and state["world_size"] == 1


def test_zero3_two_ranks_saves_gathered_adapter_and_resumes(tiny_checkpoint, tmp_path):
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training import load_adapter

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    common = ("--deepspeed", "configs/deepspeed/zero3.json", "--variant", "lavida_384", "--micro_batch_size", "1",
              "--save_steps", "2", "--max_steps", "4")
    launch(2, tiny_checkpoint, data, out, *common)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["zero_stage"] == 3 and state["world_size"] == 2
    check_adapter(out / "checkpoint-2", r=8)
    check_adapter(out / "checkpoint-4", r=8)
    model, info = load_adapter(LavidaModel.from_pretrained(tiny_checkpoint), out, variant="lavida_384")
    assert info["path"].endswith("checkpoint-4")
    # Resume under ZeRO-3 (partitioned optimizer state) from checkpoint-2: steps 3-4 are recomputed.
    (out / "latest").write_text("checkpoint-2\n")
    before = {r["step"]: r["loss"] for r in metric_steps(out)}
    launch(2, tiny_checkpoint, data, out, *common, "--resume")
    after = {r["step"]: r["loss"] for r in metric_steps(out)}
    assert list(after) == [1, 2, 3, 4]
    for step in (3, 4):  # same data, masks, RNG and optimizer state: the same losses
        assert abs(after[step] - before[step]) < 1e-4 * max(1.0, abs(before[step])), (step, before, after)
