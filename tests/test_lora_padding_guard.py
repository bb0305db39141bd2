"""Guard: a few LoRA steps from the committed reference model help with EOS padding and hurt with ``<|eot_id|>``.

The reference model's LM learnt answers as ``digit <|eot_id|> <|endoftext|> ...`` (models/reference/
training_record.json). Padding with ``<|eot_id|>`` instead asks the frozen LM for a token it never put after an
answer, at about 9 nats a slot, and the adapter learns to make the answer slot stop: p(right digit) at the sampler's
first step falls. Only training can show this: committed weights cannot tell a wrong padding.

Measured (2026-12-02, one thread, 108 training conversations, 24 validation ones, micro-batch 2, lr 4e-4): base
0.208; after 32 steps EOS 0.241, <|eot_id|> 0.187 (48 steps: 0.260 and 0.178). About 2-3 minutes on one thread.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from shirg_eval.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
STEPS = 32
PROBE_IMAGES = 3  # validation images per set (charts, documents), about 4 questions each


@pytest.fixture(scope="module")
def reading(tmp_path_factory) -> dict[str, Path]:
    from shirg_eval.data.reading import write_conversations

    root = tmp_path_factory.mktemp("reading")
    return {"train": write_conversations(root / "train", 12, split="train"),
            "validation": write_conversations(root / "validation", PROBE_IMAGES, split="validation")}


def probe_after(reading: dict[str, Path], out: Path, pad_token: str) -> tuple[float, float]:
    """The probe after STEPS steps: mean (p(right digit), p(stop)) at answer slot 0."""
    from shirg_eval.training.trainer import train

    cfg = load_config(REPO / "configs" / "train" / "reference_lora.yaml", {
        "pretrained": str(REPO / "models" / "reference"), "output_dir": str(out), "max_steps": STEPS,
        "save_steps": STEPS, "epochs": 100, "progress": False, "data.json": str(reading["train"]),
        "data.image_folder": str(reading["train"].parent), "data.pad_token": pad_token, "micro_batch_size": 2,
        "lr": 4e-4,
        "probe.every": STEPS, "probe.json": str(reading["validation"]),
        "probe.image_folder": str(reading["validation"].parent), "probe.docs": 1000,
        "deepspeed": "", "lr_scheduler": "constant", "warmup_ratio": 0.0})
    summary = train(cfg)
    probed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in probed if "probe_p_answer" in r][-1]
    assert summary["final_step"] == STEPS
    return last["probe_p_answer"], last["probe_p_stop"]


def base_probe(reading: dict[str, Path]) -> float:
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tokenizer import load_tokenizer
    from shirg_eval.training.adapters import apply_lora
    from shirg_eval.training.answers import answer_stop_id
    from shirg_eval.training.config import ProbeConfig
    from shirg_eval.training.data import ConversationDataset
    from shirg_eval.training.probe import Probe
    from shirg_eval.visual.path import VisualPath

    checkpoint = REPO / "models" / "reference"
    model = LavidaModel.from_pretrained(checkpoint, device="cpu", dtype=torch.float32)
    tokenizer = load_tokenizer(checkpoint)
    docs = ConversationDataset(reading["validation"])
    probe = Probe(ProbeConfig(every=1, json=str(reading["validation"]), docs=1000), docs, tokenizer, 8,
                  answer_stop_id(tokenizer))
    peft = apply_lora(model, 16, 32, 0.0, load_config(REPO / "configs" / "train" / "reference_lora.yaml")
                      .lora_targets())  # LoRA B starts at 0: the base's numbers
    return probe.measure(peft, VisualPath(model, "shirg_fixed"), 0).p_answer


@pytest.mark.slow
def test_eos_padding_helps_and_eot_padding_does_not(reading, tmp_path):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    base = base_probe(reading)
    eos, eos_stop = probe_after(reading, tmp_path / "eos", "eos")
    eot, eot_stop = probe_after(reading, tmp_path / "eot", "eot")
    print(f"p(right digit) at slot 0: base {base:.4f}, EOS-padded {eos:.4f} (p(stop) {eos_stop:.4f}), "
          f"eot-padded {eot:.4f} (p(stop) {eot_stop:.4f}); {time.perf_counter() - start:.0f} s")
    assert eos > base > eot, (base, eos, eot)
    assert eos - eot > 0.03, (base, eos, eot)
