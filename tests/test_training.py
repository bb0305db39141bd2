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

from shirg_eval.model.adapters import AdapterError
from shirg_eval.model.config import CheckpointNotFoundError
from shirg_eval.model.digest import weights_sha256
from shirg_eval.training.adapters import lora_param_count_from_dims
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


def start_records(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r.get("event") == "start"]


def prompt_embeds(model, tokenizer, image, variant: str = "lavida_384") -> torch.Tensor:
    from shirg_eval.model.prompting import build_prompt_ids
    from shirg_eval.visual.path import VisualPath

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


def test_records_may_declare_the_selection_query(tmp_path, tiny_checkpoint, tiny_tokenizer, monkeypatch):
    from PIL import Image

    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training import loss
    from shirg_eval.training.answers import answer_stop_id
    from shirg_eval.training.data import SkipStats, parse_records
    from shirg_eval.visual.path import VisualPath

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    turns = [{"from": "human", "value": "<image>\nWhat is it?\nAnswer with a word."}, {"from": "gpt", "value": "x"}]
    declared, plain = parse_records([{"id": "a", "image": "a.png", "conversations": turns, "shirg_question": "What is it?"},
                                     {"id": "b", "image": "a.png", "conversations": turns}], tmp_path, SkipStats())
    assert declared.question == plain.question == "What is it?\nAnswer with a word."
    assert (declared.query, plain.query) == ("What is it?", None)
    seen = []
    monkeypatch.setattr(loss, "question_embeds", lambda model, tok, text: seen.append(text))
    model = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")
    path, stop = VisualPath(model, "lavida_384"), answer_stop_id(tiny_tokenizer)
    for sample in (declared, plain):
        loss.encode_sample(model, path, tiny_tokenizer, sample, Image.new("RGB", (64, 48)), None, 8, stop)
    assert seen == ["What is it?", "What is it?\nAnswer with a word."]  # the LM prompt keeps the instruction


def test_answers_padded_with_stop_tokens(tiny_checkpoint, tiny_tokenizer):
    from PIL import Image

    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training.answers import answer_stop_id
    from shirg_eval.training.data import Sample
    from shirg_eval.training.loss import encode_sample
    from shirg_eval.visual.path import VisualPath

    model = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")
    path, stop = VisualPath(model, "lavida_384"), answer_stop_id(tiny_tokenizer)
    sample, image = Sample("s", "img.png", "What is it?", "a red square"), Image.new("RGB", (64, 48), (9, 9, 9))
    plain = encode_sample(model, path, tiny_tokenizer, sample, image, None, 128, stop).answer_ids.tolist()
    words = tiny_tokenizer("a red square", add_special_tokens=False)["input_ids"]
    assert plain == words + [stop]
    padded = encode_sample(model, path, tiny_tokenizer, sample, image, None, 128, stop, pad_answers_to=12)
    assert padded.answer_ids.tolist() == words + [stop] * (12 - len(words))
    short = encode_sample(model, path, tiny_tokenizer, sample, image, None, 128, stop, pad_answers_to=2)
    assert short.answer_ids.tolist() == plain  # never truncates
    with pytest.raises(ConfigError, match="pad_answers_to must be >= 0"):
        load_config(TINY_YAML, {"data.pad_answers_to": -1})


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
    # The former objective (LLaDA's SFT form, <|eot_id|> pads): the merge tolerance below was set on its adapter;
    # LaViDa's objective is tested in test_objective.py.
    cfg = tiny_cfg(tiny_checkpoint, data, out, max_steps=24, save_steps=12, lora_lm=True, lr=1e-2,
                   warmup_ratio=0.0, lr_scheduler="constant", objective="llada_sft", **{"data.pad_token": "eot",
                                                                                          "data.pad_to_batch": False})
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
    first = json.loads((trained["out"] / "metrics.jsonl").read_text().splitlines()[0])
    assert first["event"] == "start" and first["resumed_from"] is None and first["start_step"] == 0
    assert len(first["config_sha256"]) == 64 and first["time"].endswith("+00:00")
    assert first["base_weights_sha256"] == weights_sha256(trained["cfg"].pretrained)


def test_skipped_records_reported(trained):
    assert trained["summary"]["skipped"] == {"malformed": 2, "missing_image": 1, "corrupt_image": 1}
    assert trained["summary"]["records_read"] == trained["summary"]["records_indexed"] == 5
    end = json.loads((trained["out"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["skipped"]["corrupt_image"] == 1


def test_checkpoint_layout(trained):
    out = trained["out"]
    assert (out / "latest").read_text().strip() == "checkpoint-24"
    ckpt = out / "checkpoint-24"
    for name in ("adapter_config.json", "adapter_model.safetensors", "shirg_adapter.json", "trainer_state.json",
                 "rng_state_rank0.safetensors"):
        assert (ckpt / name).is_file(), name
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.pt"))  # nothing of ours needs pickle to read
    meta = json.loads((ckpt / "shirg_adapter.json").read_text())
    assert meta["variant"] == "lavida_384" and meta["rank"] == 8 and "mm_projector" in meta["lora_targets"]
    assert meta["base_weights_sha256"] == weights_sha256(trained["cfg"].pretrained) and meta["format"] == 2
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


def test_pipeline_loads_adapter_and_logs_one_line(trained, tiny_checkpoint, capsys):
    from shirg_eval.pipeline import ShirgPipeline

    pipe = ShirgPipeline(str(tiny_checkpoint), variant="lavida_384", lora=str(trained["out"] / "checkpoint-24"))
    assert pipe.lora_info["variant"] == "lavida_384" and pipe.lora_info["step"] == 24
    assert pipe.lora_info["base_mismatch"] is None
    lines = [line for line in capsys.readouterr().err.splitlines() if "LoRA" in line]
    digest = weights_sha256(tiny_checkpoint)[:12]
    assert lines == [f"[shirg-eval] LoRA {trained['out'] / 'checkpoint-24'}: step 24, variant lavida_384, "
                     f"base weights sha256 {digest}"]


def test_mismatched_adapter_errors(trained, tiny_checkpoint, tmp_path):
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tiny import make_tiny_checkpoint
    from shirg_eval.training import load_adapter

    with pytest.raises(AdapterError, match=r"trained for lavida_384 .*requested variant is shirg_fixed"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), trained["out"], variant="shirg_fixed")
    other = make_tiny_checkpoint(tmp_path / "other", seed=1, image_aspect_ratio="pad")
    with pytest.raises(AdapterError, match=rf"trained for lavida_384 on base .*but the model is {other}"):
        load_adapter(LavidaModel.from_pretrained(other), trained["out"], variant="lavida_384")
    # Same config.json, other weights (shirg-make-tiny --seed 1): refused by the weights digest ...
    twin = make_tiny_checkpoint(tmp_path / "twin", seed=1)
    assert (twin / "config.json").read_bytes() == (Path(tiny_checkpoint) / "config.json").read_bytes()
    with pytest.raises(AdapterError, match=r"different base model \(weights sha256 .*allow_base_mismatch"):
        load_adapter(LavidaModel.from_pretrained(twin, device="cpu", dtype="float32"), trained["out"],
                     variant="lavida_384")
    # ... unless overridden explicitly, which the returned run record carries.
    _, info = load_adapter(LavidaModel.from_pretrained(twin, device="cpu", dtype="float32"), trained["out"],
                           variant="lavida_384", allow_base_mismatch=True)
    assert info["base_mismatch"] == {"base_weights_sha256": {"adapter": weights_sha256(tiny_checkpoint),
                                                             "model": weights_sha256(twin)}}
    from shirg_eval.pipeline import ShirgPipeline  # the harness's path: the override lands in run_meta

    pipe = ShirgPipeline(str(twin), "lavida_384", lora=str(trained["out"]), allow_base_mismatch=True, device="cpu",
                         dtype="float32")
    assert pipe.describe()["lora"]["base_mismatch"] == info["base_mismatch"]
    broken = tmp_path / "broken"
    shutil.copytree(trained["out"] / "checkpoint-24", broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing adapter_model.safetensors"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), broken)
    with pytest.raises(AdapterError, match="does not exist"):
        load_adapter(LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32"), tmp_path / "nope")


# ------------------------------------------------------------------------------------------ a user's work is never lost
def test_output_dir_with_a_run_refuses_a_fresh_start(tiny_checkpoint, tmp_path, capsys):
    from shirg_eval.training.run_record import WRITER_LOCK, OutputDirError
    from shirg_eval.training.trainer import main, train

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "latest").write_text("checkpoint-10\n")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputDirError, match=r"already holds a training run \(checkpoint-10, latest, metrics.jsonl "
                                             r"\(1 logged steps\)\)\. Continue it with --resume, start over with "
                                             r"--overwrite"):
        train(tiny_cfg(tiny_checkpoint, data, out, max_steps=1))
    with pytest.raises(SystemExit) as exc:  # the CLI: one line naming the fix, exit status 2
        main(["--config", str(TINY_YAML), "--pretrained", str(tiny_checkpoint), "--data.json", str(data),
              "--data.image_folder", str(data.parent), "--output_dir", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    # Untouched: the run's files as they were; only the writer lock records the refused launch (its pid).
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != WRITER_LOCK} == before
    with pytest.raises(ConfigError, match="--overwrite and --resume auto contradict"):
        tiny_cfg(tiny_checkpoint, data, out, overwrite=True, resume="auto")


def test_overwrite_starts_over_and_skip_counts_are_honest(tiny_checkpoint, tmp_path, capsys):
    """--overwrite deletes the earlier run; the start-up line does not claim image decodability it has not
    checked, and the final line counts every skipped record met among the records read."""
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "data", n=4, broken=True)  # 4 good + 1 corrupt indexed; 2 malformed, 1 missing
    out = tmp_path / "out"
    (out / "checkpoint-9").mkdir(parents=True)
    (out / "latest").write_text("checkpoint-9\n")
    (out / "metrics.jsonl").write_text('{"step": 9, "loss": 1.0}\n')
    summary = train(tiny_cfg(tiny_checkpoint, data, out, max_steps=2, save_steps=2, micro_batch_size=1,
                             overwrite=True))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("event", r.get("step")) for r in records] == ["start", 1, 2, "end"]
    assert records[0]["overwrote"] == ["checkpoint-9", "latest", "metrics.jsonl (1 logged steps)"]
    printed = capsys.readouterr().out
    start = next(line for line in printed.splitlines() if "[shirg-train] data:" in line)
    assert "corrupt_image" not in start and "images are decoded as records are read" in start
    assert "malformed 2, missing_image 1" in start
    end = next(line for line in printed.splitlines() if "[shirg-train] done:" in line)
    met = summary["skipped"]["corrupt_image"]
    assert summary["records_read"] == 2 and summary["records_indexed"] == 5
    assert f"corrupt_image {met} (found among the 2 of 5 indexed records read so far)" in end


def test_resume_onto_other_base_weights_is_refused(trained, tmp_path):
    from shirg_eval.model.tiny import make_tiny_checkpoint
    from shirg_eval.training.trainer import train

    twin = make_tiny_checkpoint(tmp_path / "twin", seed=1)  # same config.json, other weights
    out = tmp_path / "out"
    shutil.copytree(trained["out"], out)
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "output_dir": str(out), "resume": "auto", "max_steps": 25,
                         "pretrained": str(twin)})
    with pytest.raises(AdapterError, match=r"resume: .*checkpoint-24 was trained on base .*--pretrained .*twin is "
                                           r"another model \(weights sha256 .*--allow_base_mismatch true"):
        train(cfg)
    cfg.allow_base_mismatch = True
    assert train(cfg)["final_step"] == 25
    resumed = start_records(out)[-1]
    assert resumed["allow_base_mismatch"] is True and resumed["base_weights_sha256"] == weights_sha256(twin)
    assert resumed["base_mismatch"]["base_weights_sha256"]["adapter"] == weights_sha256(trained["cfg"].pretrained)


class _OpensAFileWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_resume_never_unpickles_deepspeed_files(trained, tmp_path):
    """DeepSpeed reads its files with weights_only=False; a shared checkpoint whose ds/ file carries code is
    refused on --resume before anything in it runs."""
    from shirg_eval.training.trainer import train

    out = tmp_path / "out"
    shutil.copytree(trained["out"], out)
    marker = tmp_path / "code-ran"
    torch.save({"module": _OpensAFileWhenUnpickled(marker)}, out / "checkpoint-24" / "ds" / "mp_rank_00_model_states.pt")
    cfg = TrainConfig(**{**trained["cfg"].__dict__, "output_dir": str(out), "resume": "auto", "max_steps": 25})
    with pytest.raises(RuntimeError, match=r"mp_rank_00_model_states.pt holds objects outside the weights-only "
                                           r"allow-list \(global io.open\)"):
        train(cfg)
    assert not marker.exists()


def test_trainer_errors_name_the_trainer_flag(tmp_path):
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "data", n=2)
    with pytest.raises(CheckpointNotFoundError) as exc:
        train(tiny_cfg(tmp_path / "no-such-checkpoint", data, tmp_path / "out"))
    assert "Pass --pretrained /path/to/a/local/checkpoint" in str(exc.value) and "pretrained=" not in str(exc.value)


def test_rng_state_round_trips_without_pickle(tmp_path):
    import random

    import numpy as np
    from safetensors import safe_open

    from shirg_eval.training.checkpoint import load_legacy_rng_state, load_rng_state, save_rng_state

    def draws():
        return random.random(), random.gauss(0, 1), float(np.random.rand()), float(torch.rand(1))

    random.gauss(0, 1)  # leaves a cached gaussian in Python's state: it must survive too
    save_rng_state(tmp_path / "rng.safetensors")
    expected = draws()
    with safe_open(str(tmp_path / "rng.safetensors"), framework="pt") as handle:
        assert set(handle.keys()) >= {"python", "numpy_keys", "torch"}
    load_rng_state(tmp_path / "rng.safetensors")
    assert draws() == expected
    # A checkpoint from before the safetensors format still resumes, read with weights_only=True.
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               tmp_path / "rng_state_rank0.pt")
    expected = draws()
    assert load_legacy_rng_state(tmp_path / "rng_state_rank0.pt") and draws() == expected


def test_truncated_image_is_skipped_even_after_lmms_eval_import(tmp_path, monkeypatch):
    """lmms-eval turns on PIL's LOAD_TRUNCATED_IMAGES process-wide; training data must still count a cut JPEG."""
    import io

    from PIL import Image, ImageFile

    from shirg_eval.training.data import ConversationDataset

    data = make_data(tmp_path, n=2)
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buf, "JPEG")
    (tmp_path / "images" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    records = json.loads(data.read_text())
    records.append({**records[0], "id": "cut", "image": "images/cut.jpg"})
    data.write_text(json.dumps(records))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    ds = ConversationDataset(data)
    assert [s.uid for s, img in (ds[i] for i in range(len(ds))) if img is None] == ["cut"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


# ------------------------------------------------------------------------------------------ failures
def test_nan_loss_stops_without_saving(tiny_checkpoint, tmp_path, monkeypatch):
    from shirg_eval.training import trainer

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    real = trainer.diffusion_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, info = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), info

    monkeypatch.setattr(trainer, "diffusion_loss", flaky)
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
    first, resumed = start_records(out)  # one start record per launch, the second says where it resumed from
    assert first["resumed_from"] is None and resumed["resumed_from"].endswith(f"checkpoint-{resumed['start_step']}")
    assert first["config_sha256"] == resumed["config_sha256"]  # --resume is not part of the configuration
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
