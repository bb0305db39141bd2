"""shirg-train-reference: deterministic batches, a run folder that is never silently reused, exact resume."""

from __future__ import annotations

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
    (out / "recipe.json").write_text('{"seed": 5}')
    with pytest.raises(ref_train.RunFolderError, match="changes"):
        ref_train.train(out, recipe, resume=True)


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
