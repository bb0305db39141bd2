"""The committed LoRAs of the reference mini-LaViDa help where they are meant to (#24).

``models/reference-lora-lavida_672`` aligns the unpooled 672 px view, a path its base never saw in training: on a
fixed subset of the held-out test split (the first ``N_DOCS`` documents of each hard reading set, CPU fp32) it must
raise the probability of the right digit at the first answer slot over the same path without it, with a paired
bootstrap interval above 0 (the score of tests/test_reference_model.py; the decoded accuracies over 400 documents
per set are in models/reference/MODEL_CARD.md). A LoRA that taught the answer slot to stop, as the pre-#24 trainer's
did, lowers this score.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shirg_eval.metrics.bootstrap import paired_bootstrap
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.tokenizer import load_tokenizer
from shirg_eval.reference.evaluate import answer_probabilities

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "models" / "reference"
N_DOCS = 40


def _scores(variant: str, lora: Path | None) -> dict[str, float]:
    # a model of its own per run: answer_probabilities merges the LoRA into the model it is given
    model = LavidaModel.from_pretrained(REFERENCE, device="cpu", dtype=torch.float32).eval()
    return answer_probabilities(model, load_tokenizer(REFERENCE), variant, N_DOCS, "test",
                                lora=str(lora) if lora else None)


def test_the_672_lora_raises_the_right_digit_over_its_base() -> None:
    base = _scores("lavida_672", None)
    adapted = _scores("lavida_672", REPO / "models" / "reference-lora-lavida_672")
    gain = paired_bootstrap(base, adapted, names=("lavida_672", "lavida_672 + LoRA"))
    assert gain.low > 0, gain
