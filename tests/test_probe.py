"""The decoding-aware validation probe: p(answer) and p(stop) at the sampler's first step, during training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_training import make_data, metric_steps, tiny_cfg

from shirg_eval.training.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def held_out(root: Path, n: int = 3) -> Path:
    """Conversations like the training ones, with ids and images of their own."""
    path = make_data(root, n=n)
    records = json.loads(path.read_text())
    for r in records:
        r["id"] = "v" + r["id"]
    path.write_text(json.dumps(records))
    return path


def test_full_softmax_extends_answer_probability():
    """On the reference model: the full-softmax p(digit) renormalised over the digits is the digits-only score, and
    p(answer) + p(stop) are probabilities of disjoint tokens."""
    from shirg_eval.data.reading import make_item, reading_task
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tokenizer import load_tokenizer
    from shirg_eval.pipeline import ShirgPipeline
    from shirg_eval.reference.evaluate import answer_probability, digit_ids

    checkpoint = REPO / "models" / "reference"
    model = LavidaModel.from_pretrained(checkpoint, device="cpu", dtype=torch.float32).eval()
    tokenizer = load_tokenizer(checkpoint)
    pipe = ShirgPipeline(str(checkpoint), "lavida", model=model, tokenizer=tokenizer)
    item = make_item("chart", 0, split="validation")
    task = reading_task("chart")
    args = (item.image, task.prompt(item.question), item.answer, task.max_new_tokens)
    pipe.reseed("chart/0")
    among_digits = answer_probability(pipe, *args, query=item.question)
    pipe.reseed("chart/0")
    p_answer, p_stop = answer_probability(pipe, *args, query=item.question, full_softmax=True)
    # the digits' total mass, from the same first step
    from shirg_eval.model.prompting import build_prompt_ids
    from shirg_eval.training.probe import first_slot_logits

    pipe.reseed("chart/0")
    visual = pipe.path.encode(pipe.path.prepare(item.image), pipe.question_embeds(item.question), pipe.generator)
    prompt = model.embed_prompt(build_prompt_ids(tokenizer, args[1]), visual.embeds)
    probs = first_slot_logits(model, prompt, task.max_new_tokens).softmax(-1)
    digit_mass = float(probs[digit_ids(tokenizer)].sum())
    assert p_answer == pytest.approx(among_digits * digit_mass, rel=1e-5)
    assert 0 < p_answer < 1 and 0 < p_stop < 1 and p_answer + p_stop <= 1 + 1e-6


def test_probe_is_logged_and_stops_early(tiny_checkpoint, tmp_path, capsys):
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "train", n=4)
    probe = held_out(tmp_path / "probe")
    # lr ~ 0: p(answer) never improves on its first value, so early_stop 1 ends the run at the second probe
    cfg = tiny_cfg(tiny_checkpoint, data, tmp_path / "out", max_steps=8, save_steps=100, micro_batch_size=1,
                   lr=1e-30, **{"probe.every": 2, "probe.json": str(probe), "probe.image_folder": str(probe.parent),
                                "probe.docs": 2, "probe.early_stop": 1})
    summary = train(cfg)
    steps = metric_steps(tmp_path / "out")
    probed = [r for r in steps if "probe_p_answer" in r]
    assert [r["step"] for r in probed] == [2, 4]
    assert all(0 < r["probe_p_answer"] < 1 and 0 < r["probe_p_stop"] < 1 and r["probe_docs"] == 2 for r in probed)
    assert summary["final_step"] == 4 and summary["last_checkpoint"].endswith("checkpoint-4")
    out = capsys.readouterr().out
    assert "probe at step 2: p(answer)" in out and "early stop at step 4" in out


def test_probe_tracks_the_model(tiny_checkpoint, tiny_tokenizer, tmp_path):
    """The probe's numbers are those of the model it is given: zeroing the LM head's row of the answer's first token
    moves p(answer) (a probe that ignored the model could not fail this)."""
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.training.adapters import apply_lora
    from shirg_eval.training.answers import answer_stop_id
    from shirg_eval.training.config import ProbeConfig
    from shirg_eval.training.data import ConversationDataset
    from shirg_eval.training.probe import Probe
    from shirg_eval.visual.path import VisualPath

    probe_json = held_out(tmp_path / "probe", n=2)
    model = LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.float32)
    peft = apply_lora(model, 4, 8, 0.0, r"mm_projector\.(0|2)")
    probe = Probe(ProbeConfig(every=1, json=str(probe_json), docs=2), ConversationDataset(probe_json),
                  tiny_tokenizer, 32, answer_stop_id(tiny_tokenizer))
    path = VisualPath(model, "lavida_384")
    peft.train()
    before = probe.measure(peft, path, 1)
    first = tiny_tokenizer("a", add_special_tokens=False)["input_ids"][0]  # every caption starts "a ..."
    head = model.language_model.lm_head.weight
    with torch.no_grad():
        head[first] = 0  # the answer token's logit becomes 0 everywhere
    after = probe.measure(peft, path, 2)
    assert after.p_answer != pytest.approx(before.p_answer, rel=1e-3)
    assert peft.training  # measure puts the model back as it found it


def test_probe_documents_must_be_held_out(tiny_checkpoint, tmp_path):
    from shirg_eval.training.trainer import train

    data = make_data(tmp_path / "train", n=4)
    cfg = tiny_cfg(tiny_checkpoint, data, tmp_path / "out", max_steps=2,
                   **{"probe.every": 1, "probe.json": str(data), "probe.image_folder": str(data.parent)})
    with pytest.raises(ConfigError, match="probe.json shares 4 of its 4 documents with data.json"):
        train(cfg)
    assert not (tmp_path / "out").exists()  # refused before anything was written
