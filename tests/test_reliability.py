"""Bad inputs get clear errors; nothing silently falls back (issue: reliability catalogue).

Other catalogue entries live beside the code they harden: checkpoints and images in test_model_core.py,
model args and failing runs in test_harness.py, selectors in test_selection*.py, training in test_training*.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from shirg_eval.model.sampler import GenerationConfig
from shirg_eval.pipeline import ShirgPipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint, tiny_model, tiny_tokenizer):
    return ShirgPipeline(str(tiny_checkpoint), "shirg_fixed", model=tiny_model, tokenizer=tiny_tokenizer)


def test_empty_question_uses_saliency_alone(pipe):
    answer = pipe.answer(Image.new("RGB", (200, 100), "white"), "", GenerationConfig(gen_length=8))
    assert answer.visual.n_tokens == 912 and answer.ids.shape == (1, 8)


def test_question_beyond_context_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="exceeds the model's 4096-position context"):
        pipe.answer(Image.new("RGB", (64, 64)), "word " * 5000, GenerationConfig(gen_length=8))


def test_unknown_selector_names_the_known_ones(tiny_model):
    from shirg_eval.selection.presets import VisualPath

    with pytest.raises(ValueError, match="known selectors: .*full, .*shirg_fixed"):
        VisualPath(tiny_model, "shirg_fixed", selector="topk_magic")


def test_same_seed_same_answer_different_order(pipe):
    image = Image.new("RGB", (300, 200), (20, 120, 220))
    config = GenerationConfig(gen_length=8, temperature=1.0)
    first = pipe.answer(image, "colour?", config, sample_key="doc-a").ids
    pipe.answer(image, "other", config, sample_key="doc-b")
    assert torch.equal(pipe.answer(image, "colour?", config, sample_key="doc-a").ids, first)


def test_local_dataset_missing_or_misshaped(tmp_path, monkeypatch):
    import shirg_eval.tasks
    from lmms_eval.tasks import TaskManager

    tasks = str(Path(shirg_eval.tasks.__file__).parent)
    manager = TaskManager(include_path=tasks, include_defaults=False)
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(tmp_path / "missing.parquet"))
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        manager.load_task_or_group(["chartqa_200"])
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"question": ["q"], "label": ["a"]}).to_parquet(bad)
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(bad))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['answer', 'type'\]"):
        manager.load_task_or_group(["chartqa_200"])


def _python_files():
    for folder in ("shirg_eval", "train", "tasks"):
        yield from (REPO / folder).rglob("*.py")


WEIGHT_LOADERS = ("shirg_eval/model", "shirg_eval/selection", "shirg_eval/harness", "shirg_eval/pipeline.py")


def test_no_remote_code_no_pickle_no_silent_fallback():
    """trust_remote_code is never enabled, model weights never go through pickle, and no handler swallows all."""
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), path
            loads_weights = any(str(path.relative_to(REPO)).startswith(p) for p in WEIGHT_LOADERS)
            if loads_weights and isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                    getattr(getattr(node.func, "value", None), "id", None) == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
            if isinstance(node, ast.ExceptHandler) and node.type is None:
                pytest.fail(f"{path}:{node.lineno}: bare except")
