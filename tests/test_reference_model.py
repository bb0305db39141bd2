"""The committed reference mini-LaViDa reads, and the differences it is known to show are detected.

On a fixed subset of the held-out test split (the first ``N_DOCS`` documents of each hard reading set), CPU fp32,
the score of each document is the probability the model gives the right digit at the first answer slot (the whole
answer masked, as the sampler's first step sees it; ``reference.evaluate.answer_probability``). That graded score
separates visual paths on 80 documents where exact match on this weakly reading model would need hundreds. A bug
in preprocessing, position interpolation, selection or splicing pushes a path towards the 0.10 of a model that
does not see the image, and these tests fail:

* the release path (``lavida``, as trained) reads;
* resolution: the 384 px view scores below the release path's anyres tiles and below the best 672 px variant;
* selection: ``shirg_fixed`` beats ``random_k`` at the same LM-side budget (768 + 144 scaffold).

(The SHIRG LoRA committed beside the model lowers ``shirg_fixed``'s decoded accuracy, so no gain is asserted;
MODEL_CARD.md has its figures.)

The sampler itself is pinned by the golden-fixture tests (generated ids match the reference exactly); the decoded
accuracies of the model card come from the real ``lmms_eval`` command on all 400 test documents per set.
Thresholds sit below the values measured on this subset (README, "Sensitivity tests") with room for platform
rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shirg_eval.metrics.bootstrap import Interval, paired_bootstrap
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.tokenizer import load_tokenizer
from shirg_eval.reference.evaluate import answer_probabilities
from shirg_eval.visual.path import VisualPath

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "models" / "reference"
N_DOCS = 40
CHANCE = 0.10  # ten digits
RUNS = {"lavida": {}, "lavida_384": {}, "shirg_fixed": {}, "random_k": {"k": 768, "scaffold": True}}


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, float]]:
    """Per run: {"<set>/<doc>": probability of the right digit} over both sets' first N_DOCS test documents."""
    tokenizer = load_tokenizer(REFERENCE)
    model = LavidaModel.from_pretrained(REFERENCE, device="cpu", dtype=torch.float32).eval()
    return {name: answer_probabilities(model, tokenizer, name, N_DOCS, "test", **params)
            for name, params in RUNS.items()}


def _gap(scores, baseline: str, run: str) -> Interval:
    return paired_bootstrap(scores[baseline], scores[run], names=(baseline, run))


def test_subset_is_both_sets(scores) -> None:
    for name, per_doc in scores.items():
        assert len(per_doc) == 2 * N_DOCS, name
        assert {key.split("/")[0] for key in per_doc} == {"chart", "doc"}


def test_release_path_reads(scores) -> None:
    chance = {doc: CHANCE for doc in scores["lavida"]}
    above = paired_bootstrap(chance, scores["lavida"])
    assert above.estimate >= 0.06 and above.low > 0, above


def test_resolution_gap_is_detected(scores) -> None:
    tiles = _gap(scores, "lavida_384", "lavida")
    assert tiles.estimate >= 0.03 and tiles.low > 0, tiles
    best_672 = _gap(scores, "lavida_384", "shirg_fixed")
    assert best_672.estimate >= 0.05 and best_672.low > 0, best_672


def test_selection_gap_is_detected(scores) -> None:
    gap = _gap(scores, "random_k", "shirg_fixed")
    assert gap.estimate >= 0.04 and gap.low > 0, gap


def test_a_preprocessing_bug_fails_the_reading_test(scores, monkeypatch) -> None:
    """The tests above can fail: skip the processor's normalisation and the release path no longer passes."""
    prepare = VisualPath.prepare

    def unnormalised(self, image):
        views = prepare(self, image)
        views.pixel_values = (views.pixel_values + 1) / 2  # [0, 1] instead of SigLIP's [-1, 1]
        return views

    monkeypatch.setattr(VisualPath, "prepare", unnormalised)
    tokenizer = load_tokenizer(REFERENCE)
    model = LavidaModel.from_pretrained(REFERENCE, device="cpu", dtype=torch.float32).eval()
    broken = answer_probabilities(model, tokenizer, "lavida", N_DOCS, "test")
    chance = {doc: CHANCE for doc in broken}
    assert paired_bootstrap(chance, broken).estimate < 0.06  # measured 0.04, against 0.11 with the bug fixed
    assert _gap(dict(scores, broken=broken), "broken", "lavida").low > 0
