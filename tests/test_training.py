"""LoRA trainer: config, data skipping, LoRA counts, loss, checkpoints (atomic, resumable), adapter loading.

Tiny random LaViDa + tiny synthetic captions on CPU. Training runs use the 384 px path (``lavida_384``), the
cheapest variant on CPU; the SHIRG path is exercised by the DeepSpeed launcher tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shirg_eval.training.adapters import AdapterError, lora_param_count_from_dims
from shirg_eval.training.config import (
    ConfigError,
    TrainConfig,
    fill_deepspeed_config,
    load_config,
    parse_overrides,
)

# DeepSpeed JIT-builds a CPU comm op into ~/.cache/torch_extensions; checkouts with other venvs on one machine
# rebuild it in turn (their include paths differ), ~30-100 s each time. One cache per interpreter avoids that.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions" /
                                                  f"shirg-{hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]}"))

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "train" / "tiny_cpu.yaml"
COLOURS = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 200, 30), (140, 60, 170), (245, 140, 30)]


def make_data(root: Path, n: int = 4, caption: str | None = None, broken: bool = False) -> Path:
    """``n`` coloured squares with captions in LLaVA format; ``broken`` adds one malformed record, one
    record without gpt turn, one missing image and one corrupt image."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        img = Image.new("RGB", (96 + 16 * i, 96), COLOURS[i % len(COLOURS)])
        img.save(root / "images" / f"{i}.png")
        text = caption or f"a {['red', 'green', 'blue', 'yellow', 'purple', 'orange'][i % 6]} square"
        records.append({"id": f"s{i}", "image": f"images/{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image briefly."}, {"from": "gpt", "value": text}]})
    if broken:
        (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
        records += [
            {"id": "bad1", "image": "images/0.png"},  # no conversations
            {"id": "bad2", "image": "images/0.png", "conversations": [{"from": "human", "value": "<image>\nhi"}]},
            {"id": "miss", "image": "images/missing.png", "conversations": records[0]["conversations"]},
            {"id": "corrupt", "image": "images/corrupt.png", "conversations": records[0]["conversations"]},
        ]
    path = root / "data.json"
    path.write_text(json.dumps(records))
    return path


def tiny_cfg(checkpoint: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    base = {"pretrained": str(checkpoint), "data.json": str(data), "data.image_folder": str(data.parent),
            "output_dir": str(out), "variant": "lavida_384", "progress": False}
    base.update(overrides)
    return load_config(TINY_YAML, base)


def metric_steps(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "step" in r]


def prompt_embeds(model, tokenizer, image, variant: str = "lavida_384") -> torch.Tensor:
    from shirg_eval.model.prompting import build_prompt_ids
    from shirg_eval.selection.presets import VisualPath

    path = VisualPath(model, variant)
    visual = path.encode(path.prepare(image))
    return model.embed_prompt(build_prompt_ids(tokenizer, "Describe the image briefly."), visual.embeds)


# ------------------------------------------------------------------------------------------ config
def test_config_overrides_and_errors(tmp_path):
    overrides = parse_overrides(["--lr", "1e-4", "--max_steps=20", "--lora_lm", "true", "--resume",
                                 "--data.json", "x.json", "--deepspeed", "configs/deepspeed/zero3.json"])
    assert overrides == {"lr": 1e-4, "max_steps": 20, "lora_lm": True, "resume": "auto", "data.json": "x.json",
                         "deepspeed": "configs/deepspeed/zero3.json"}
    cfg = load_config(REPO / "configs" / "train" / "lora_r64.yaml", overrides)
    assert (cfg.lr, cfg.max_steps, cfg.lora_lm, cfg.data.json) == (1e-4, 20, True, "x.json")
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.micro_batch_size, cfg.grad_accum, cfg.epochs) == \
        (64, 128, 0.05, 16, 8, 2)
    assert cfg.variant == "shirg_fixed" and cfg.lr_scheduler == "cosine" and cfg.warmup_ratio == 0.1
    r32 = load_config(REPO / "configs" / "train" / "lora_r32.yaml")
    assert r32.lora_r == 32
    with pytest.raises(ConfigError, match="unknown config key 'lrr'.*valid keys:.*lr"):
        load_config(TINY_YAML, {"lrr": 1})
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(TINY_YAML, {"max_steps": "many"})
    from shirg_eval.training.trainer import main

    with pytest.raises(SystemExit) as exc:
        main(["--config", str(TINY_YAML), "--no_such_key", "1", "--local_rank=0"])
    assert exc.value.code == 2


def test_deepspeed_configs_fill_auto():
    cfg = load_config(TINY_YAML, {"micro_batch_size": 3, "grad_accum": 5})
    for name, stage in (("zero2.json", 2), ("zero3.json", 3)):
        raw = json.loads((REPO / "configs" / "deepspeed" / name).read_text())
        filled = fill_deepspeed_config(raw, cfg, world_size=2)
        assert "auto" not in json.dumps(filled)
        assert filled["train_batch_size"] == 3 * 5 * 2 and filled["zero_optimization"]["stage"] == stage
        assert filled["bf16"]["enabled"] is (torch.cuda.is_available())
        assert "optimizer" not in filled  # torch AdamW is built by the trainer (no fused-Adam JIT)
    zero3 = json.loads((REPO / "configs" / "deepspeed" / "zero3.json").read_text())
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


# ------------------------------------------------------------------------------------------ data
def test_data_skips_and_counts(tmp_path):
    from shirg_eval.training.data import ConversationDataset, ResumableOrder, micro_batches

    ds = ConversationDataset(make_data(tmp_path, n=4, broken=True))
    assert len(ds) == 5  # 4 good + the corrupt one (detected when decoded)
    assert ds.stats.malformed == 2 and ds.stats.missing_image == 1
    decoded = [ds[i] for i in range(len(ds))]
    assert [s.uid for s, img in decoded if img is None] == ["corrupt"]
    assert decoded[0][0].question == "Describe the image briefly." and decoded[0][0].answer == "a red square"
    # Seeded per-epoch shuffle, disjoint across ranks, a pure function of the micro-batch counter.
    o0, o1 = ResumableOrder(10, 2, 0, 2, seed=3), ResumableOrder(10, 2, 1, 2, seed=3)
    epoch0 = [i for m in range(o0.per_epoch) for i in o0.indices(m) + o1.indices(m)]
    assert sorted(epoch0) == list(range(8)) or len(set(epoch0)) == 8
    assert o0.indices(2) == ResumableOrder(10, 2, 0, 2, seed=3).indices(2)
    assert [o0.indices(m) for m in range(2)] != [o0.indices(m) for m in range(2, 4)]  # reshuffled per epoch
    assert o0.position(7) == (3, 1)
    # Decoding in DataLoader workers keeps the order (and the corrupt image still comes back as None).
    order = ResumableOrder(len(ds), 2, 0, 1, seed=0)
    serial = [(m, [s.uid for s, _ in b]) for m, b in micro_batches(ds, order, 1, 5)]
    workers = [(m, [s.uid for s, _ in b]) for m, b in micro_batches(ds, order, 1, 5, num_workers=2)]
    assert serial == workers and [m for m, _ in serial] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------ LoRA counts
def test_trainable_count_matches_hand_count(tiny_checkpoint):
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training.adapters import apply_lora, count_parameters

    r = 8
    for lora_lm in (False, True):
        cfg = TrainConfig(lora_r=r, lora_lm=lora_lm)
        model = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")
        total_base = sum(p.numel() for p in model.parameters())
        peft_model = apply_lora(model, r, 16, 0.05, cfg.lora_targets())
        trainable, total = count_parameters(peft_model)
        v, d, vl, ll = 48, 64, 2, 2  # TinyDims: SigLIP width, LM width, kept SigLIP layers, LM layers
        linears = [(v, v)] * 3 * min(4, vl) + [(v, d), (d, d)]  # SigLIP q/k/v (layers 0-3 exist: 0, 1) + projector
        if lora_lm:
            linears += [(d, d)] * 4 * ll
        expected = r * sum(i + o for i, o in linears)
        assert trainable == expected == lora_param_count_from_dims(linears, r)
        assert total == total_base + trainable
        names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert all("lora_" in n for n in names)
        assert any("mm_projector.0" in n for n in names) and any("encoder.layers.1.self_attn.v_proj" in n for n in names)
        assert not any("out_proj" in n for n in names)
        assert any("language_model" in n for n in names) is lora_lm


def test_real_lavida_lora_count_from_dims():
    # SigLIP so400m width 1152, layers 0-3 q/k/v; projector 1152 -> 4096 -> 4096.
    linears = [(1152, 1152)] * 12 + [(1152, 4096), (4096, 4096)]
    assert lora_param_count_from_dims(linears, 64) == 2_629_632
    assert lora_param_count_from_dims(linears, 32) == 1_314_816
    assert lora_param_count_from_dims([(4096, 4096)] * 4 * 32, 64) == 67_108_864  # + lora_lm (q/k/v/o, 32 layers)


# ------------------------------------------------------------------------------------------ one trained run
@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    """24 optimizer steps overfitting 4 images with one caption (plus broken records that must be skipped)."""
    from shirg_eval.training.trainer import train

    root = tmp_path_factory.mktemp("overfit")
    data = make_data(root / "data", n=4, caption="a red square on a white background", broken=True)
    out = root / "out"
    cfg = tiny_cfg(tiny_checkpoint, data, out, max_steps=24, save_steps=12, lora_lm=True, lr=1e-2,
                   warmup_ratio=0.0, lr_scheduler="constant")
    summary = train(cfg, return_model=True)
    return {"summary": summary, "out": out, "data": data, "cfg": cfg}


def test_loss_decreases_and_metrics(trained):
    steps = metric_steps(trained["out"])
    assert [r["step"] for r in steps] == list(range(1, 25))
    losses = [r["loss"] for r in steps]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert all(r["grad_norm"] is not None and r["tokens_per_s"] > 0 and r["lr"] > 0 for r in steps)
    assert trained["summary"]["final_step"] == 24


def test_skipped_records_reported(trained):
    assert trained["summary"]["skipped"] == {"malformed": 2, "missing_image": 1, "corrupt_image": 1}
    end = json.loads((trained["out"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["skipped"]["corrupt_image"] == 1


def test_checkpoint_layout(trained):
    out = trained["out"]
    assert (out / "latest").read_text().strip() == "checkpoint-24"
    ckpt = out / "checkpoint-24"
    for name in ("adapter_config.json", "adapter_model.safetensors", "shirg_adapter.json", "trainer_state.json",
                 "rng_state_rank0.pt"):
        assert (ckpt / name).is_file(), name
    assert not list(ckpt.glob("adapter_model.bin"))
    meta = json.loads((ckpt / "shirg_adapter.json").read_text())
    assert meta["variant"] == "lavida_384" and meta["rank"] == 8 and "mm_projector" in meta["lora_targets"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 24 and state["micro_step"] == 24 and {"epoch", "index"} <= set(state)


def test_adapter_roundtrip_and_changes_outputs(trained, tiny_checkpoint, tiny_tokenizer):
    from PIL import Image

    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training import load_adapter

    image = Image.open(trained["data"].parent / "images" / "1.png").convert("RGB")
    train_model = trained["summary"]["model"]
    train_model.eval()
    with torch.no_grad():
        base = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")
        ref = train_model.get_base_model()
        trained_logits = ref.logits(prompt_embeds(ref, tiny_tokenizer, image))
        base_logits = base.logits(prompt_embeds(base, tiny_tokenizer, image))
        unmerged, info = load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), trained["out"],
                                      variant="lavida_384", merge=False)
        unmerged_logits = unmerged.get_base_model().logits(prompt_embeds(unmerged.get_base_model(), tiny_tokenizer, image))
        merged, info = load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), trained["out"], variant="lavida_384")
        merged_logits = merged.logits(prompt_embeds(merged, tiny_tokenizer, image))
    assert torch.equal(unmerged_logits, trained_logits)
    # Merging reassociates fp32 sums (W + BA)x vs Wx + B(Ax): equal to 1e-5 of the logits' scale.
    scale = trained_logits.abs().max()
    assert (merged_logits - trained_logits).abs().max() < 1e-5 * scale, (merged_logits - trained_logits).abs().max()
    assert (merged_logits - base_logits).abs().max() > 1e-3
    assert info["path"].endswith("checkpoint-24") and info["variant"] == "lavida_384" and info["rank"] == 8
    assert len(info["sha256"]) == 64 and not any("lora_" in n for n, _ in merged.named_parameters())


def test_pipeline_loads_adapter(trained, tiny_checkpoint):
    from shirg_eval.pipeline import ShirgPipeline

    pipe = ShirgPipeline(str(tiny_checkpoint), variant="lavida_384", lora=str(trained["out"] / "checkpoint-24"))
    assert pipe.lora_info["variant"] == "lavida_384"


def test_mismatched_adapter_errors(trained, tiny_checkpoint, tmp_path):
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tiny import make_tiny_checkpoint
    from shirg_eval.training import load_adapter

    with pytest.raises(AdapterError, match=r"trained for lavida_384 .*requested variant is shirg_fixed"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), trained["out"], variant="shirg_fixed")
    other = make_tiny_checkpoint(tmp_path / "other", seed=1, image_aspect_ratio="pad")
    with pytest.raises(AdapterError, match=rf"trained for lavida_384 on base .*but the model is {other}"):
        load_adapter(LavidaModel.from_pretrained(other), trained["out"], variant="lavida_384")
    broken = tmp_path / "broken"
    shutil.copytree(trained["out"] / "checkpoint-24", broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing adapter_model.safetensors"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), broken)
    with pytest.raises(AdapterError, match="does not exist"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), tmp_path / "nope")


# ------------------------------------------------------------------------------------------ failures
def test_nan_loss_stops_without_saving(tiny_checkpoint, tmp_path, monkeypatch):
    from shirg_eval.training import trainer

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    real = trainer.masked_diffusion_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, info = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), info

    monkeypatch.setattr(trainer, "masked_diffusion_loss", flaky)
    with pytest.raises(trainer.TrainingDivergedError, match=r"non-finite loss at step 3 .*checkpoint-2"):
        trainer.train(tiny_cfg(tiny_checkpoint, data, out, max_steps=4, save_steps=2, micro_batch_size=1))
    assert (out / "latest").read_text().strip() == "checkpoint-2"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


def test_crash_during_save_keeps_previous_and_tmp_is_ignored(tiny_checkpoint, tmp_path, monkeypatch):
    from shirg_eval.training import checkpoint, trainer

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    cfg = tiny_cfg(tiny_checkpoint, data, out, max_steps=4, save_steps=2, micro_batch_size=1,
                   gradient_checkpointing=True)  # also exercises the checkpointing switch
    real = checkpoint.write_adapter
    calls = {"n": 0}

    def crash_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            real(*args, **kwargs)  # half-written checkpoint-4.tmp ...
            raise OSError("disk full (simulated)")  # ... then the crash
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "write_adapter", crash_second)
    with pytest.raises(OSError, match="simulated"):
        trainer.train(cfg)
    assert (out / "latest").read_text().strip() == "checkpoint-2"
    assert (out / "checkpoint-4.tmp").is_dir() and not (out / "checkpoint-4").exists()
    assert checkpoint.find_latest(out) == out / "checkpoint-2"
    monkeypatch.setattr(checkpoint, "write_adapter", real)
    cfg.resume = "auto"
    summary = trainer.train(cfg)
    assert summary["final_step"] == 4 and (out / "latest").read_text().strip() == "checkpoint-4"
    assert not (out / "checkpoint-4.tmp").exists()
    assert [r["step"] for r in metric_steps(out)] == [1, 2, 3, 4]


def test_sigkill_then_resume(tiny_checkpoint, tmp_path):
    """Kill -9 a CLI run after its first checkpoint; --resume finishes with every step logged exactly once."""
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "train" / "lora.py"), "--config", str(TINY_YAML),
           "--pretrained", str(tiny_checkpoint), "--data.json", str(data), "--data.image_folder", str(data.parent),
           "--output_dir", str(out), "--variant", "lavida_384", "--max_steps", "8", "--save_steps", "2",
           "--micro_batch_size", "1", "--grad_accum", "2", "--progress", "false"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "latest").exists():
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = max(r["step"] for r in metric_steps(out))
    assert killed_at < 8
    cfg = tiny_cfg(tiny_checkpoint, data, out, max_steps=8, save_steps=2, micro_batch_size=1, grad_accum=2,
                   resume="auto")
    summary = train(cfg)
    assert summary["final_step"] == 8
    assert [r["step"] for r in metric_steps(out)] == list(range(1, 9))
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["micro_step"] == 16


def test_resume_reproduces_uninterrupted_run(tiny_checkpoint, tmp_path):
    """Optimizer, scheduler, RNG and data position restored: steps after the resume point are recomputed equal."""
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    cfg = tiny_cfg(tiny_checkpoint, data, out, max_steps=6, save_steps=3, micro_batch_size=1, grad_accum=2,
                   lora_dropout=0.1, warmup_ratio=0.34)
    train(cfg)
    before = {r["step"]: (r["loss"], r["lr"]) for r in metric_steps(out)}
    (out / "latest").write_text("checkpoint-3\n")  # pretend the run died right after step 3
    cfg.resume = "auto"
    assert train(cfg)["final_step"] == 6
    after = {r["step"]: (r["loss"], r["lr"]) for r in metric_steps(out)}
    assert list(after) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert after[step][1] == before[step][1]
        assert abs(after[step][0] - before[step][0]) < 1e-5 * max(1.0, abs(before[step][0])), (step, before, after)
