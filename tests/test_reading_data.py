"""The hard reading sets: deterministic, disjoint splits, hub schemas, and annotations that match the pixels."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from shirg_eval.data import reading
from shirg_eval.data.synthetic import records_digest
from shirg_eval.reference.dense import BACKGROUND, IGNORE, patch_labels, sample_view


@pytest.mark.parametrize("kind", reading.KINDS)
def test_items_are_deterministic_and_splits_disjoint(kind: str) -> None:
    a = reading.make_item(kind, 3, split="test")
    b = reading.make_item(kind, 3, split="test")
    assert a.png() == b.png() and (a.question, a.answer) == (b.question, b.answer)
    digests = {s: {records_digest([reading.to_record(reading.make_item(kind, i, split=s), i)]) for i in range(6)}
               for s in reading.SPLITS}
    assert all(len(d) == 6 for d in digests.values())
    assert not (digests["train"] & digests["test"]) and not (digests["validation"] & digests["test"])
    assert reading.make_item(kind, 3, seed=1, split="test").png() != a.png()


@pytest.mark.parametrize("kind", reading.KINDS)
def test_question_names_a_region_holding_the_answer(kind: str) -> None:
    for i in range(5):
        item = reading.make_item(kind, i)
        assert min(item.image.size) >= 672
        assert item.cue in item.question and item.answer.isdigit() and len(item.answer) == 1
        (box,) = [b for colour, b in item.regions if colour == item.cue]
        (printed,) = [p for p in item.numbers if p.cue == item.cue]
        assert printed.text == item.answer
        x0, y0, x1, y1 = printed.box
        assert box[0] <= x0 and x1 <= box[2] and box[1] <= y0 and y1 <= box[3]
        # the printed glyph really is there: dark ink inside its box, the cue colour around it
        pixels = np.asarray(item.image.crop(printed.box).convert("L"))
        assert pixels.min() < 80
        assert item.image.getpixel((box[0] + 2, box[3] - 2)) == reading.COLOURS[item.cue]


def test_character_cells_tile_the_string() -> None:
    item = reading.make_item("doc", 0)
    for printed in item.numbers:
        assert "".join(ch for ch, _ in printed.chars) == printed.text
        lefts = [box[0] for _, box in printed.chars]
        assert lefts == sorted(lefts) and printed.chars[-1][1][2] == pytest.approx(printed.box[2], abs=1)


def test_records_use_the_hub_schemas() -> None:
    chart = reading.make_records("chart", 3)
    doc = reading.make_records("doc", 3)
    assert set(chart[0]) == {"type", "question", "answer", "image"}
    assert [r["type"] for r in chart] == ["human_test", "augmented_test", "human_test"]
    assert set(doc[0]) >= {"questionId", "question", "answers", "image", "docId", "question_types"}
    assert doc[1]["answers"] == [reading.make_item("doc", 1).answer]


def test_patch_labels_follow_the_digits() -> None:
    item = reading.make_item("doc", 2)
    printed = next(p for p in item.numbers if p.cue)
    char, (x0, y0, x1, y1) = printed.chars[0]
    # a 4x4-patch window (56 px at scale 1) with the digit's cell inside one patch
    window = (x0 - 14 - 1, y0 - 14 - 1, x0 - 14 - 1 + 56, y0 - 14 - 1 + 56)
    digits, colours = patch_labels(item, window, 4)
    grid = digits.reshape(4, 4)
    assert grid[1, 1] == int(char)
    assert set(np.unique(grid)) <= {BACKGROUND, IGNORE, *range(10)}
    assert colours.reshape(4, 4)[1, 1] == reading.COLOUR_NAMES.index(printed.cue) + 1


def test_sample_view_shapes_and_determinism() -> None:
    item = reading.make_item("page", 0, split="train")
    a = sample_view(item, random.Random(0), 12, 0.8)
    b = sample_view(item, random.Random(0), 12, 0.8)
    assert a.pixels.shape == (3, 168, 168) and a.digits.shape == (144,)
    assert bool((a.pixels == b.pixels).all()) and bool((a.digits == b.digits).all())
    assert a.pixels.dtype == torch.uint8 and int(a.pixels.max()) == 255  # white paper in every crop


def test_cached_reading_set_renders_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIRG_CACHE", str(tmp_path))
    path = reading.cached_reading_set("doc", n=3)
    assert path.name == "validation.parquet" and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert reading.cached_reading_set("doc", n=3) == path and path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("reading/*.tmp-*"))


def test_conversations_carry_the_task_prompts(tmp_path):
    import json

    path = reading.write_conversations(tmp_path, n=1, split="train")
    entries = json.loads(path.read_text())
    for kind in reading.KINDS:
        item = reading.make_item(kind, 0, split="train")
        mine = [e for e in entries if e["id"].startswith(f"{kind}-train-0-")]
        assert len(mine) == len(item.questions)
        for entry, (question, answer, _) in zip(mine, item.questions, strict=True):
            human, gpt = entry["conversations"]
            assert human["value"] == f"<image>\n{question}{reading.reading_task(kind).post_prompt}" and gpt["value"] == answer
            assert entry["shirg_question"] == question and (tmp_path / entry["image"]).is_file()


def test_prompts_and_gen_lengths_are_the_tasks_yamls():
    """The reading sets' prompts and generation lengths are their tasks' YAML values (read through the include)."""
    import yaml

    from shirg_eval.data import task_yaml

    tasks = Path(__file__).resolve().parents[1] / "tasks"

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # lmms-eval's !function tags
    assert task_yaml.tasks_dir().resolve() == tasks
    for kind, task, included in (("chart", "chartqa_reading", "chartqa_200"), ("doc", "docvqa_reading", "docvqa_200")):
        assert reading.READING_TASKS[kind] == task
        spec = yaml.load((tasks / included / f"{included}.yaml").read_text(), Loader=Loader)
        got = reading.reading_task(kind)
        assert got.post_prompt == spec["lmms_eval_specific_kwargs"]["default"]["post_prompt"]
        assert got.pre_prompt == spec["lmms_eval_specific_kwargs"]["default"]["pre_prompt"]
        assert got.max_new_tokens == spec["generation_kwargs"]["max_new_tokens"]
    assert (reading.reading_task("chart").max_new_tokens, reading.reading_task("doc").max_new_tokens) == (16, 32)


def test_a_changed_task_yaml_changes_the_prompts(tmp_path):
    """Values come from the YAML text, include and !function tags included, not from a copy."""
    import shutil

    from shirg_eval.data import task_yaml

    tasks = Path(__file__).resolve().parents[1] / "tasks"
    for task in ("chartqa_200", "chartqa_reading"):
        shutil.copytree(tasks / task, tmp_path / task)
    base = tmp_path / "chartqa_200" / "chartqa_200.yaml"
    base.write_text(base.read_text().replace("max_new_tokens: 16", "max_new_tokens: 24")
                    .replace("with a single word.", "in one word, please."))
    got = task_yaml.task_prompting("chartqa_reading", root=tmp_path)
    assert got.max_new_tokens == 24 and got.post_prompt == "\nAnswer the question in one word, please."
    assert got.prompt("Q?") == "Q?\nAnswer the question in one word, please."
    reading_yaml = tmp_path / "chartqa_reading" / "chartqa_reading.yaml"
    reading_yaml.write_text(reading_yaml.read_text() + "generation_kwargs:\n  max_new_tokens: 8\n")
    assert task_yaml.task_prompting("chartqa_reading", root=tmp_path).max_new_tokens == 8  # the task's keys win
    assert task_yaml.load_task_yaml("chartqa_reading", root=tmp_path)["class"] == "utils.TaskClass"
