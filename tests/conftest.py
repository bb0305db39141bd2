"""Shared test fixtures: the golden LaViDa fixture sets and a tiny checkpoint built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SHIRG_FIXTURES", REPO.parent / "shared" / "fixtures" / "lavida"))


def fixture_sets() -> list[Path]:
    sets = sorted(p for p in FIXTURES.glob("set_*") if (p / "expected.safetensors").is_file())
    if not sets and os.environ.get("CI"):
        raise RuntimeError(f"golden fixtures not found at {FIXTURES}; CI must run with ../shared beside the clone")
    return sets


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from shirg_eval.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "lavida-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from shirg_eval.model.lavida import LavidaModel

    # CPU fp32 everywhere, also on GPU machines: the tests compare exact values.
    return LavidaModel.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint):
    from shirg_eval.model.tiny import load_tokenizer

    return load_tokenizer(tiny_checkpoint)
