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
    from shirg_eval.visual.path import VisualPath

    with pytest.raises(ValueError, match="known selectors: .*full, .*shirg_fixed"):
        VisualPath(tiny_model, "shirg_fixed", selector="topk_magic")


def test_same_seed_same_answer_different_order(pipe):
    image = Image.new("RGB", (300, 200), (20, 120, 220))
    config = GenerationConfig(gen_length=8, temperature=1.0)
    first = pipe.answer(image, "colour?", config, sample_key="doc-a").ids
    pipe.answer(image, "other", config, sample_key="doc-b")
    assert torch.equal(pipe.answer(image, "colour?", config, sample_key="doc-a").ids, first)


def test_local_dataset_missing_or_misshaped(tmp_path, monkeypatch):
    from lmms_eval.tasks import TaskManager

    import shirg_eval.tasks

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
    """Every Python file of the project (git's view of the tree: no venv, no build output)."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        yield from (REPO / name for name in listed.stdout.split() if (REPO / name).is_file())
        return
    for folder in ("shirg_eval", "train", "tasks", "tests", "configs"):  # an exported tree without git
        yield from (REPO / folder).rglob("*.py")


def _torch_load_names(tree: ast.AST) -> set[str]:
    """Local names bound to torch.load (``from torch import load as x``)."""
    return {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module in ("torch", "torch.serialization") for alias in node.names if alias.name == "load"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


PICKLE_LOADERS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "cloudpickle.loads",
                  "dill.load", "dill.loads", "joblib.load", "pandas.read_pickle", "pd.read_pickle"}


def unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every call that can unpickle: torch.load without weights_only=True (any spelling),
    pickle-family loaders, np.load(allow_pickle=True)."""
    load_names = _torch_load_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        if (name in ("torch.load", "torch.serialization.load") or name in load_names) and \
                getattr(kw.get("weights_only"), "value", None) is not True:
            found.append((node.lineno, "torch.load without weights_only=True"))
        if name in PICKLE_LOADERS:
            found.append((node.lineno, f"{name} unpickles"))
        if name in ("np.load", "numpy.load") and getattr(kw.get("allow_pickle"), "value", False) is True:
            found.append((node.lineno, "np.load(allow_pickle=True)"))
    return found


def test_no_remote_code_no_pickle_no_silent_fallback():
    """trust_remote_code is never enabled, nothing is unpickled anywhere in the tree (every torch.load has
    weights_only=True, no pickle/joblib/np.load(allow_pickle=True)), and no handler swallows everything."""
    files = list(_python_files())
    assert any(f.name == "checkpoint.py" for f in files) and any(f.parent.name == "tests" for f in files)
    for path in files:
        tree = ast.parse(path.read_text())
        rel = path.relative_to(REPO)
        assert not unsafe_loads(tree), [f"{rel}:{line}: {what}" for line, what in unsafe_loads(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), rel
            if isinstance(node, ast.ExceptHandler) and node.type is None:
                pytest.fail(f"{rel}:{node.lineno}: bare except")


@pytest.mark.parametrize("code", [
    "import torch\ntorch.load(f)", "import torch\ntorch.load(f, weights_only=False)",
    "from torch import load\nload(f)", "from torch import load as tl\ntl(f)", "import torch\ntorch.serialization.load(f)",
    "import pickle\npickle.loads(b)", "import numpy as np\nnp.load(f, allow_pickle=True)",
])
def test_unsafe_load_check_flags_each_spelling(code):
    assert unsafe_loads(ast.parse(code))
    assert not unsafe_loads(ast.parse("import torch\ntorch.load(f, weights_only=True)"))


# ------------------------------------------------------------------------------------------ commands
def test_model_load_has_no_transformers_model_type_warning(tiny_checkpoint):
    """AutoTokenizer used to rebuild the llava_llada config through transformers' type-checked path, which
    warned "You are using a model of type `llava_llada` to instantiate a model of type ``" on every load."""
    import logging

    from shirg_eval.model.tokenizer import load_tokenizer

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logging.getLogger("transformers").addHandler(handler)
    try:
        tokenizer = load_tokenizer(tiny_checkpoint)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert tokenizer.mask_token == "<|mdm_mask|>" and type(tokenizer).__name__ == "TokenizersBackend"
    assert not [m for m in seen if "You are using a model of type" in m], seen


def test_viz_offline_without_pretrained_is_one_line(tmp_path):
    """Offline and no --pretrained: one line naming --pretrained (the CLI's flag), no traceback."""
    import os
    import subprocess
    import sys

    Image.new("RGB", (64, 48), "white").save(tmp_path / "x.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty hub cache
    proc = subprocess.run([str(Path(sys.executable).with_name("shirg-viz")), str(tmp_path / "x.png"), "-o",
                           str(tmp_path / "o.png")], env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("shirg-viz: error: checkpoint 'jacklishufan/lavida-llada-v1.0-instruct'")
    assert "Pass --pretrained /path/to/a/local/checkpoint" in lines[0] and "pretrained=" not in lines[0]
