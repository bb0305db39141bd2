"""Matched budgets: every `controls:` cell of the shipped sweeps feeds the LM exactly as many visual tokens as the
cell it controls, measured on a real rendered chart with the tiny checkpoint (the count does not depend on the
weights, only on the variant, its selector parameters and the image grid)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from shirg_eval.data.synthetic import make_chartqa
from shirg_eval.harness.model_args import parse_model_args
from shirg_eval.model.sampler import GenerationConfig
from shirg_eval.model.tokenizer import load_tokenizer
from shirg_eval.pipeline import ShirgPipeline
from shirg_eval.report import sweep as sw
from shirg_eval.visual.path import VisualPath

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
# At least this many control pairs per shipped sweep, so the check below can never pass vacuously.
MIN_PAIRS = {"roadmap.yaml": 4, "ocr.yaml": 4, "demo.yaml": 4, "ablations.yaml": 1, "methods.yaml": 44, "reference.yaml": 4,
             "reference_lora.yaml": 2, "reference_lora_2x2.yaml": 0,
             "reference_lora_ranks.yaml": 0}


VIEWS: dict[str, int] = {}  # cell name -> image views its visual path encoded (anyres cells: more than one)


def _visual_tokens(model, cell: sw.Cell, image) -> int:
    """Visual tokens the LM receives: the visual block, or for an in-LM selector (FastV) what the prefill kept."""
    params = parse_model_args(cell.model, dict(cell.model_args)).variant_params()  # what the harness passes
    path = VisualPath(model, cell.model, **params)
    if not path.in_lm:
        visual = path(image)
    else:
        pipe = ShirgPipeline("tiny", cell.model, model=model, tokenizer=load_tokenizer(model.checkpoint_path),
                             **params)
        visual = pipe.answer(image, "What is shown?", GenerationConfig(gen_length=2)).visual
    VIEWS[cell.name] = int(visual.views.pixel_values.shape[0])
    return visual.n_tokens


@pytest.fixture(scope="module")
def chart() -> Image.Image:
    return Image.open(io.BytesIO(make_chartqa(1)[0]["image"])).convert("RGB")


def test_every_shipped_sweep_declares_its_controls() -> None:
    assert sorted(p.name for p in SWEEPS.glob("*.yaml")) == sorted(MIN_PAIRS)
    for name, minimum in MIN_PAIRS.items():
        cells = sw.load_sweep(SWEEPS / name).cells
        assert sum(c.controls is not None for c in cells) >= minimum, name


@pytest.mark.parametrize("sweep_file", sorted(MIN_PAIRS))
def test_controls_match_their_reference_token_count(sweep_file: str, tiny_model, chart) -> None:
    cells = {c.name: c for c in sw.load_sweep(SWEEPS / sweep_file).cells}
    counts: dict[str, int] = {}
    for cell in cells.values():
        if cell.controls is None:
            continue
        for name in (cell.name, cell.controls):
            if name not in counts:
                counts[name] = _visual_tokens(tiny_model, cells[name], chart)
        assert counts[cell.name] == counts[cell.controls], (
            f"{sweep_file}: {cell.name} feeds {counts[cell.name]} visual tokens, "
            f"its reference {cell.controls} {counts[cell.controls]}"
        )
    if sweep_file == "methods.yaml":
        assert {counts[f"shirg_fixed_k{k}"] for k in (912, 768, 576, 256)} == {912, 768, 576, 256}
        assert counts["fastv_k576"] == 576
        assert counts["hired_anyres_k576"] == 576
        assert VIEWS["hired_anyres_k576"] > 1 and VIEWS["hired_k576"] == 1  # anyres cells measured on anyres
    elif not sweep_file.startswith(("ablations", "reference_lora")):  # the budgets the roadmap's comparisons are about
        assert counts["shirg_fixed"] == counts["pool_k"] == counts["random_k"] == 768 + 144
        assert counts["shirg_fixed_768"] == counts["pool_k_768"] == counts["random_k_768"] == 768


def test_unknown_or_self_control_is_refused(tmp_path: Path) -> None:
    for target in ("nope", "a"):
        cfg = tmp_path / f"{target}.yaml"
        cfg.write_text(f"tasks: [chartqa_200]\ncells:\n  - {{name: a, model: pool_k, controls: {target}}}\n")
        with pytest.raises(ValueError, match=f"cell 'a' controls '{target}', which is not another cell"):
            sw.load_sweep(cfg)
