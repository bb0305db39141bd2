"""shirg-train-reference: deterministic batches, a run folder that is never silently reused, exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shirg_eval.model.adapters import LATEST
from shirg_eval.reference import train as ref_train
from shirg_eval.reference.batches import DenseBatches, loader
from shirg_eval.reference.factory import REFERENCE_DIMS, make_reference_init, reference_tokenizer
from shirg_eval.training.checkpoint import STATE_FILE

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
    (out / "checkpoint-dense-000002" / STATE_FILE).write_text('{"stage": "dense", "step": 2}')
    (out / LATEST).write_text("checkpoint-dense-000002\n")
    with pytest.raises(ref_train.RunFolderError, match=r"changes \['seed'\]"):
        ref_train.train(out, recipe, resume=True)


def test_resume_may_change_the_knobs_of_a_stage_not_yet_begun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = ref_train.Recipe(**TINY_RECIPE)
    ref_train._prepare_folder(out, first, resume=False, overwrite=False)
    (out / "checkpoint-dense-000004").mkdir()
    (out / "checkpoint-dense-000004" / STATE_FILE).write_text('{"stage": "dense", "step": 4, "complete": true}')
    (out / LATEST).write_text("checkpoint-dense-000004\n")
    second = ref_train.Recipe(**{**TINY_RECIPE, "qa_lr": 3e-3, "qa_pointer_weight": 1.0})
    assert ref_train._prepare_folder(out, second, resume=True, overwrite=False) == ["qa_lr", "qa_pointer_weight"]
    assert json.loads((out / "recipe.json").read_text())["qa_lr"] == 3e-3
    (out / "checkpoint-dense-000004" / STATE_FILE).write_text('{"stage": "qa", "step": 2}')
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
    from shirg_eval.cli.train_reference import _boolean

    assert _boolean("True") and not _boolean("0")
    with pytest.raises(Exception, match="expected true or false"):
        _boolean("on")


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


def _darkness_block(model, views) -> torch.Tensor:
    """Mean redness of each visual position, through the processor's pixels, pooling and layout themselves (white
    page, grey or black padding: 0; a pure red glyph: 2)."""
    pixels = views.pixel_values[:, 0, :378, :378] - views.pixel_values[:, 1, :378, :378]  # [V, 378, 378]
    patches = pixels.reshape(len(pixels), 27, 14, 27, 14).mean((2, 4)).reshape(len(pixels), 729, 1)
    pooled = model.pool_2d(patches, mode=model.config.mm_spatial_pool_mode)
    return model.layout_block(pooled, views, torch.tensor([-9.0]))[:, 0]


@pytest.mark.parametrize("size", [(1000, 940), (1400, 700), (640, 1200)])
def test_guidance_labels_land_where_the_pixels_do(reference_init: Path, size: tuple[int, int]) -> None:
    """A red glyph drawn on a white page lands, through the real views, pooling and layout, on the visual
    positions the labels name (every view of anyres, and the pad path): the geometry is the model's own."""
    import random

    from PIL import Image, ImageDraw

    from shirg_eval.data.reading import Printed, ReadingItem
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.reference.dense import IGNORE
    from shirg_eval.reference.labels import answer_positions, block_labels

    model = LavidaModel.from_pretrained(reference_init)
    rng = random.Random(str(size))
    for _ in range(3):
        width, height = size
        x0, y0 = rng.uniform(40, width - 80), rng.uniform(40, height - 80)
        box = (int(x0), int(y0), int(x0) + 18, int(y0) + 24)  # about one pooled cell of the tiles
        image = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(image).rectangle(box, fill=(255, 0, 0))
        item = ReadingItem("doc", image, "q", "4", "red", [Printed("4", box, "red", [("4", box)])],
                           [("red", (box[0] - 100, box[1] - 100, box[2] + 100, box[3] + 100))])
        for views in (model.image_processor.anyres(image), model.image_processor.pad(image)):
            dark = _darkness_block(model, views)
            digits, colours = block_labels(model, item, views)
            found = answer_positions(model, item, views, "red")
            assert digits.shape == colours.shape == found.shape == dark.shape
            newline = dark == -9.0
            assert (digits[newline] == IGNORE).all() and not found[newline].any() and (colours[newline] == 0).all()
            spans = [(0, 196), (196, len(dark))] if views.grid_wh is not None else [(0, len(dark))]
            for a, b in spans:  # the reddest position of each part (base view, tile map) holds the glyph
                darkest = a + int(dark[a:b].argmax())
                assert found[darkest] and digits[darkest] in (4, IGNORE), (views.grid_wh, box, darkest)
                assert colours[darkest] > 0
            # every clearly red position is labelled (a drift of a few pixels, e.g. the 378/384 px the tower sees,
            # leaves some unlabelled)
            assert found[dark > 0.5 * dark.max()].all(), (views.grid_wh, box)
            assert answer_positions(model, item, views, "blue").sum() == 0


def test_guidance_reads_digits_and_points_at_the_asked_number(reference_init: Path) -> None:
    from shirg_eval.data.reading import COLOUR_NAMES, make_item
    from shirg_eval.model.lavida import LavidaModel
    from shirg_eval.model.tokenizer import load_tokenizer
    from shirg_eval.reference.batches import QABatches, QASample
    from shirg_eval.reference.factory import POST_PROMPTS
    from shirg_eval.reference.guided import IGNORE, guided_loss, guided_sequences
    from shirg_eval.reference.labels import view_windows
    from shirg_eval.reference.qa import PromptIds

    model = LavidaModel.from_pretrained(reference_init)
    tokenizer = load_tokenizer(reference_init)
    digit_ids, colour_ids = torch.arange(100, 110), torch.arange(200, 200 + len(COLOUR_NAMES))
    batches = QABatches(0, 9, 0, 2, 4, model.image_processor, None, POST_PROMPTS, (16,), crop_steps=6, crop_images=2)
    for step in (0, 4, 8):  # isolated regions, crops, whole images
        for sample in batches.build(step).samples:
            sequences = guided_sequences(model, tokenizer, sample, PromptIds(tokenizer), digit_ids, colour_ids)
            for q, seq in zip(sample.questions, sequences, strict=True):
                assert seq.pointer.any(), (step, q)
                shown = seq.digit_labels[seq.pointer]
                assert set(shown.tolist()) <= {100 + int(q.answer), IGNORE} and (shown != IGNORE).any()
                assert (seq.digit_labels == 200 + COLOUR_NAMES.index(q.cue)).any()
                assert seq.cue == COLOUR_NAMES.index(q.cue) + 1 and (seq.colours[seq.pointer] == seq.cue).any()
                assert seq.shows_digit.equal(torch.isin(seq.digit_labels, digit_ids))
                if sample.views.grid_wh is not None:  # anyres: pointed at in the tiles only, never the base view
                    assert not seq.pointer[:196].any()
            if len(sequences) > 1:  # different questions point at different numbers
                assert not sequences[0].pointer.equal(sequences[1].pointer)
            plain = guided_sequences(model, tokenizer, sample, PromptIds(tokenizer), digit_ids)[0]
            assert set(plain.digit_labels.tolist()) <= set(range(100, 110)) | {IGNORE}  # no colour words
            for q in sample.questions:  # the shifted glyph boxes hold black ink in the views' own pixels
                printed = next(p for p in sample.item.numbers if p.cue == q.cue)
                windows = view_windows(sample.views)
                seen = 0
                for view, (x0, y0, x1, y1) in enumerate(windows):
                    if (len(windows) > 1 and view == 0) or not (x0 <= printed.box[0] and printed.box[2] <= x1
                                                               and y0 <= printed.box[1] and printed.box[3] <= y1):
                        continue  # the base view is too small to hold ink; tiles that miss the glyph
                    px = [int((printed.box[0] - x0) / (x1 - x0) * 378), int((printed.box[2] - x0) / (x1 - x0) * 378)]
                    py = [int((printed.box[1] - y0) / (y1 - y0) * 378), int((printed.box[3] - y0) / (y1 - y0) * 378)]
                    patch = sample.views.pixel_values[view, :, py[0]: py[1] + 1, px[0]: px[1] + 1].mean(0)
                    assert patch.min() < -0.4, (step, q, view)
                    seen += 1
                assert seen or len(windows) > 1, (step, q)  # a glyph may straddle two tiles
    def total(**weights):
        torch.manual_seed(0)
        return guided_loss(model, sequences, model.config.mask_token_id, reading_weight=0.0, pointer_weight=0.0,
                           full_mask=True, colour_token_ids=colour_ids, digit_token_ids=digit_ids, **weights)

    with torch.no_grad():  # each guidance term enters the loss with its weight
        base, _ = total()
        with_cue, stats = total(cue_weight=2.0)
        assert torch.isclose(with_cue - base, torch.tensor(2.0 * stats["loss_cue"]), rtol=1e-4)
        with_carry, stats = total(carry_weight=0.5)
        assert torch.isclose(with_carry - base, torch.tensor(0.5 * stats["loss_carry"]), rtol=1e-4)
    with pytest.raises(ValueError, match="digits' token ids"):
        guided_loss(model, sequences, model.config.mask_token_id, reading_weight=1.0, pointer_weight=0.0,
                    full_mask=True, carry_weight=1.0)
    with pytest.raises(ValueError, match="colour words"):
        guided_loss(model, sequences, model.config.mask_token_id, reading_weight=1.0, pointer_weight=0.0,
                    full_mask=True, cue_weight=1.0)
    item = make_item("doc", 0, split="validation")
    with pytest.raises(ValueError, match="glyph positions"):
        guided_sequences(model, tokenizer, QASample(model.image_processor.anyres(item.image), []), PromptIds(tokenizer),
                         digit_ids)


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
    assert (tmp_path / "run" / LATEST).read_text().startswith("checkpoint-qa")
