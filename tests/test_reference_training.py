"""shirg-train-reference: deterministic batches, a run folder that is never silently reused, exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shirg_eval.reference import train as ref_train
from shirg_eval.reference.batches import DenseBatches, loader
from shirg_eval.reference.factory import REFERENCE_DIMS, make_reference_init, reference_tokenizer

TINY_RECIPE = dict(dense_steps=4, dense_batch=4, dense_grids=(8,), qa_steps=2, qa_images=1, qa_questions=1,
                   checkpoint_every=2, warmup=2, log_every=1)


def test_reference_tokenizer_and_layout(tmp_path: Path) -> None:
    tok = reference_tokenizer()
    assert all(len(tok.tokenize(str(d))) == 1 for d in range(10))
    path = make_reference_init(tmp_path / "init")
    keys = load_file(str(path / "model.safetensors")).keys()
    assert "model.mm_projector.0.weight" in keys and "model.image_newline" in keys
    assert f"model.transformer.blocks.{REFERENCE_DIMS.n_layers - 1}.q_proj.weight" in keys
    assert (path / "siglip_vision_config.json").is_file() and (path / "tokenizer.json").is_file()


def test_batches_do_not_depend_on_worker_count() -> None:
    def collect(workers: int) -> list:
        ds = DenseBatches(0, 4, seed=0, batch=4, grids=(8, 12), curriculum_steps=2)
        return [(b.step, b.pixels, b.digits) for b in loader(ds, workers)]

    alone, pooled = collect(0), collect(2)
    assert [s for s, _, _ in alone] == [s for s, _, _ in pooled] == [0, 1, 2, 3]
    for (_, pa, da), (_, pb, db) in zip(alone, pooled, strict=True):
        assert torch.equal(pa, pb) and torch.equal(da, db)


def test_run_folder_is_never_reused_silently(tmp_path: Path) -> None:
    recipe = ref_train.Recipe(**TINY_RECIPE)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ref_train.RunFolderError, match="--resume.*--overwrite"):
        ref_train.train(out, recipe)
    theirs = ref_train.Recipe(**{**TINY_RECIPE, "seed": 5})
    (out / "recipe.json").write_text(json.dumps(dataclasses.asdict(theirs)))
    (out / "checkpoint-dense-000002").mkdir()
    (out / "checkpoint-dense-000002" / ref_train.STATE).write_text('{"stage": "dense", "step": 2}')
    (out / ref_train.LATEST).write_text("checkpoint-dense-000002\n")
    with pytest.raises(ref_train.RunFolderError, match=r"changes \['seed'\]"):
        ref_train.train(out, recipe, resume=True)


def test_resume_may_change_the_knobs_of_a_stage_not_yet_begun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = ref_train.Recipe(**TINY_RECIPE)
    ref_train._prepare_folder(out, first, resume=False, overwrite=False)
    (out / "checkpoint-dense-000004").mkdir()
    (out / "checkpoint-dense-000004" / ref_train.STATE).write_text('{"stage": "dense", "step": 4, "complete": true}')
    (out / ref_train.LATEST).write_text("checkpoint-dense-000004\n")
    second = ref_train.Recipe(**{**TINY_RECIPE, "qa_lr": 3e-3, "qa_pointer_weight": 1.0})
    assert ref_train._prepare_folder(out, second, resume=True, overwrite=False) == ["qa_lr", "qa_pointer_weight"]
    assert json.loads((out / "recipe.json").read_text())["qa_lr"] == 3e-3
    (out / "checkpoint-dense-000004" / ref_train.STATE).write_text('{"stage": "qa", "step": 2}')
    with pytest.raises(ref_train.RunFolderError, match="already begun"):
        ref_train._prepare_folder(out, first, resume=True, overwrite=False)
    # a recipe written before a knob existed held its default: resuming at defaults is no change
    older = json.loads((out / "recipe.json").read_text())
    del older["qa_reading_colours"]
    (out / "recipe.json").write_text(json.dumps(older))
    assert ref_train._prepare_folder(out, second, resume=True, overwrite=False) == []


def test_the_seed_is_frozen_once_the_init_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ref_train._prepare_folder(out, ref_train.Recipe(**TINY_RECIPE), resume=False, overwrite=False)
    (out / "init").mkdir()
    with pytest.raises(ref_train.RunFolderError, match=r"\['seed'\]"):
        ref_train._prepare_folder(out, ref_train.Recipe(**{**TINY_RECIPE, "seed": 3}), resume=True, overwrite=False)


def test_boolean_flags_refuse_anything_but_true_or_false() -> None:
    assert ref_train._boolean("True") and not ref_train._boolean("0")
    with pytest.raises(Exception, match="expected true or false"):
        ref_train._boolean("on")


@pytest.mark.slow
def test_resume_after_a_crash_gives_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = ref_train.Recipe(**TINY_RECIPE)
    straight = ref_train.train(tmp_path / "straight", recipe, device="cpu")

    original_save = ref_train.Run.save

    def crash_after_first_qa_checkpoint(self, model, stage, step, *args, **kwargs):
        path = original_save(self, model, stage, step, *args, **kwargs)
        if stage == "dense" and step == 2:
            raise KeyboardInterrupt("simulated kill")
        return path

    monkeypatch.setattr(ref_train.Run, "save", crash_after_first_qa_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ref_train.train(tmp_path / "resumed", recipe, device="cpu")
    monkeypatch.setattr(ref_train.Run, "save", original_save)
    assert (tmp_path / "resumed" / "latest").read_text().strip() == "checkpoint-dense-000002"
    resumed = ref_train.train(tmp_path / "resumed", recipe, resume=True, device="cpu")

    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    starts = [line for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 2 and "checkpoint-dense-000002" in starts[1]


@pytest.fixture(scope="module")
def reference_init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reference_init(tmp_path_factory.mktemp("ref") / "init")


def test_guidance_labels_lie_on_the_release_block(reference_init: Path) -> None:
    """Per-position labels are laid out exactly as the visual block the LM receives (anyres and pad paths)."""
    from shirg_eval.data.reading import make_item
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.reference.dense import ReadingHeads
    from shirg_eval.reference.guided import IGNORE, release_block

    model = LavidaModel.from_pretrained(reference_init)
    heads = ReadingHeads(model.vision_tower.config.hidden_size)
    with torch.no_grad():  # a digit head that calls every patch a '7': every non-newline position is labelled 7
        heads.digit.weight.zero_()
        heads.digit.bias.copy_(torch.tensor([0.0] * 7 + [20.0] + [0.0] * 3))
    item = make_item("doc", 0, split="validation")
    digit_ids = torch.arange(100, 110)
    for views in (model.image_processor.anyres(item.image), model.image_processor.pad(item.image)):
        embeds, labels, colours = release_block(model, heads, views, digit_ids)
        with torch.no_grad():
            assert torch.equal(embeds, model.release_embeds(views))
        newline = (embeds == model.image_newline).all(-1)
        assert newline.any() and labels.shape == colours.shape == newline.shape
        assert (labels[newline] == IGNORE).all() and (labels[~newline] == 107).all()


def test_guidance_points_at_the_asked_region_and_names_its_colour(reference_init: Path) -> None:
    from shirg_eval.data.reading import COLOUR_NAMES, make_item
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tiny import load_tokenizer
    from shirg_eval.reference.batches import QASample, Question
    from shirg_eval.reference.dense import BACKGROUND, ReadingHeads
    from shirg_eval.reference.guided import IGNORE, guided_sequences
    from shirg_eval.reference.qa import PromptIds

    model = LavidaModel.from_pretrained(reference_init)
    tokenizer = load_tokenizer(reference_init)
    heads = ReadingHeads(model.vision_tower.config.hidden_size)
    with torch.no_grad():  # left half: a blue region with '3's in its top half; right half: background, no region
        heads.digit.weight.zero_()
        heads.colour.weight.zero_()
        heads.digit.bias.zero_()
        heads.colour.bias.zero_()
    item = make_item("chart", 0, split="validation")
    views = model.image_processor.pad(item.image)
    side = 27
    left = (torch.arange(side * side) % side) < side // 2
    top_left = left & (torch.arange(side * side) // side < side // 2)

    def fake_heads(features):
        digit = torch.full((*features.shape[:2], BACKGROUND + 1), -20.0)
        colour = torch.full((*features.shape[:2], len(COLOUR_NAMES) + 1), -20.0)
        digit[..., BACKGROUND] = 20.0
        digit[:, top_left, 3], digit[:, top_left, BACKGROUND] = 20.0, -20.0
        colour[..., 0] = 20.0
        colour[:, left, 0], colour[:, left, COLOUR_NAMES.index("blue") + 1] = -20.0, 20.0
        return digit, colour

    heads.forward = fake_heads
    digit_ids, colour_ids = torch.arange(100, 110), torch.arange(200, 200 + len(COLOUR_NAMES))
    asks = [Question("q", "What is the number in the blue box?", "3", 4, "blue"),
            Question("q", "What is the number in the red box?", "3", 4, "red")]
    blue, red = guided_sequences(model, tokenizer, heads, QASample(views, asks), PromptIds(tokenizer), digit_ids,
                                 colour_ids)
    assert blue.pointer.sum() > 0 and red.pointer.sum() == 0  # only the asked colour's digits are pointed at
    assert set(blue.digit_labels[blue.pointer].tolist()) == {103}
    blue_word = 200 + COLOUR_NAMES.index("blue")
    assert (blue.digit_labels == blue_word).sum() > 0 and set(blue.digit_labels.tolist()) <= {103, blue_word, IGNORE}
    plain = guided_sequences(model, tokenizer, heads, QASample(views, asks[:1]), PromptIds(tokenizer), digit_ids)[0]
    assert (plain.digit_labels[~plain.pointer] == IGNORE).all() and plain.pointer.equal(blue.pointer)


def test_pointer_attention_is_the_models_own(reference_init: Path) -> None:
    """The answer slot's attention, recomputed for one query, equals the eager attention of the full forward."""
    from shirg_eval.model.lavida import LavidaModel, bidirectional_mask
    from shirg_eval.reference.guided import _first_slot_attention

    model = LavidaModel.from_pretrained(reference_init, attn_implementation="eager")
    torch.manual_seed(0)
    embeds = torch.randn(2, 12, model.config.d_model) * 0.5
    key_padding = torch.zeros(2, 12, dtype=torch.bool)
    key_padding[1, 9:] = True
    with torch.no_grad():
        out = model.language_model(inputs_embeds=embeds, output_attentions=True, output_hidden_states=True,
                                   attention_mask=bidirectional_mask(2, 12, 12, embeds.dtype, embeds.device,
                                                                     key_padding))
        mine = _first_slot_attention(model, out.hidden_states[-2], key_padding, [5, 7])
    theirs = out.attentions[-1].mean(1)
    assert torch.allclose(mine[0], theirs[0, 5], atol=1e-6) and torch.allclose(mine[1], theirs[1, 7], atol=1e-6)


@pytest.mark.slow
def test_guided_recipe_trains_and_logs_its_losses(tmp_path: Path) -> None:
    recipe = ref_train.Recipe(**TINY_RECIPE, qa_reading_weight=1.0, qa_pointer_weight=2.0, qa_full_mask=True,
                              qa_gen_lengths=(2, 4), qa_reading_colours=True)
    final = ref_train.train(tmp_path / "run", recipe, device="cpu")
    assert (final / "model.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    qa = [r for r in records if r.get("stage") == "qa"]
    assert qa and all(r["loss_reading"] > 0 for r in qa)
    for r in qa:  # the step's loss is the answer loss plus both guidance losses at their weights (1, 2)
        assert r["loss"] == pytest.approx(r["loss_answer"] + r["loss_reading"] + 2 * r["loss_pointer"], abs=1e-3)
    assert (tmp_path / "run" / ref_train.LATEST).read_text().startswith("checkpoint-qa")
