"""Variant presets on the tiny checkpoint: token counts, real 672 px pixels, gradients, pictures."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from shirg_eval.selection.base import DEFAULT_K
from shirg_eval.visual.path import VisualPath
from shirg_eval.visual.variants import VARIANTS, UnknownVariantError, variant_settings


@pytest.fixture(scope="module")
def chart() -> Image.Image:
    image = Image.new("RGB", (640, 480), "white")
    for i, h in enumerate([100, 300, 200, 400]):
        image.paste((40 * i, 90, 200), (60 + 140 * i, 460 - h, 140 + 140 * i, 460))
    return image


@pytest.mark.parametrize("variant,expected", [("lavida_384", 729), ("lavida_672", 2304), ("shirg_fixed", 912),
                                              ("pool_k", 768), ("random_k", 768)])
def test_token_counts(tiny_model, chart, variant, expected):
    with torch.no_grad():
        assert VisualPath(tiny_model, variant)(chart).n_tokens == expected


def test_shirg_fixed_without_scaffold_and_other_k(tiny_model, chart):
    with torch.no_grad():
        assert VisualPath(tiny_model, "shirg_fixed", scaffold=False)(chart).n_tokens == 768
        assert VisualPath(tiny_model, "shirg_fixed", k=512)(chart).n_tokens == 512 + 144


def test_672_view_is_real_pixels(tiny_model, chart):
    views = VisualPath(tiny_model, "shirg_fixed").prepare(chart)
    assert tuple(views.pixel_values.shape) == (1, 3, 672, 672)
    # Not an upsampled 384 px tensor: a 384 -> 672 bicubic upsample would not reproduce the 672 px resize.
    low = VisualPath(tiny_model, "lavida_384").prepare(chart).pixel_values
    upsampled = torch.nn.functional.interpolate(low, size=(672, 672), mode="bicubic", align_corners=False)
    assert (upsampled - views.pixel_values).abs().max() > 0.05


def test_selected_tokens_are_raster_ordered_projected_tokens(tiny_model, chart):
    path = VisualPath(tiny_model, "shirg_fixed", scaffold=False)
    with torch.no_grad():
        views = path.prepare(chart)
        seq = path.encode(views)
        all_tokens = tiny_model.encode_images(views.pixel_values)[0]
    kept = seq.kept_indices
    assert torch.equal(kept, kept.sort().values)
    assert torch.allclose(seq.embeds, all_tokens[kept])


def test_gradients_reach_projector_and_siglip(tiny_model, chart):
    path = VisualPath(tiny_model, "shirg_fixed")
    tiny_model.zero_grad(set_to_none=True)
    seq = path(chart, text_embeds=tiny_model.embed_tokens.weight[:5].detach())
    seq.embeds.square().sum().backward()
    assert tiny_model.mm_projector[0].weight.grad.abs().sum() > 0
    layer0 = tiny_model.vision_tower.encoder.layers[0].self_attn.q_proj.weight
    assert layer0.grad is not None and layer0.grad.abs().sum() > 0
    tiny_model.zero_grad(set_to_none=True)


def test_unknown_variant_and_release_arguments(tiny_model, chart):
    with pytest.raises(UnknownVariantError, match="known variants: lavida"):
        VisualPath(tiny_model, "shirg_fast")
    with pytest.raises(ValueError, match="released path"):
        VisualPath(tiny_model, "lavida", k=3)
    with torch.no_grad(), pytest.raises(ValueError, match="k=100"):
        VisualPath(tiny_model, "shirg_fixed", k=100)(chart)  # fewer than the 144 coverage regions
    with torch.no_grad(), pytest.raises(ValueError, match="k=5000"):
        VisualPath(tiny_model, "shirg_fixed", k=5000)(chart)  # more than the 2304 tokens
    assert set(VARIANTS) == {"lavida", "lavida_384", "lavida_672", "shirg_fixed", "shirg_original", "pool_k",
                             "random_k", "visionzip", "divprune", "dart", "hired", "prumerge", "prumerge_plus",
                             "tome", "fastv"}


def test_viz_cli(tiny_checkpoint, chart, tmp_path):
    from shirg_eval.cli.viz import main

    src = tmp_path / "chart.png"
    chart.save(src)
    assert main([str(src), "--pretrained", str(tiny_checkpoint), "--variant", "shirg_fixed", "-o",
                 str(tmp_path / "sel.png")]) == 0
    assert Image.open(tmp_path / "sel.png").size[0] == 672
    assert main(["--posembed", str(src), "--pretrained", str(tiny_checkpoint), "-o", str(tmp_path / "pe.png")]) == 0
    assert (tmp_path / "pe.png").stat().st_size > 0


def test_viz_shows_what_fastv_kept_in_the_lm(tiny_checkpoint, tiny_model, tiny_tokenizer, chart):
    from shirg_eval.pipeline import ShirgPipeline
    pipe = ShirgPipeline(tiny_checkpoint, "fastv", model=tiny_model, tokenizer=tiny_tokenizer, k=128)
    visual = pipe.selected_visual(chart, "What is the highest value?")  # the visual side alone would keep 2304
    assert visual.n_tokens == 128 and visual.kept_indices.numel() == 128


def test_another_selector_does_not_silently_drop_the_presets_parameters(tiny_model):
    """prumerge_plus presets plus=True for prumerge: selector=tome would lose it, so that is refused with the fix."""
    with pytest.raises(ValueError, match=r"'prumerge_plus' presets k=768, plus=True .*selector='tome'.*lavida_672"):
        VisualPath(tiny_model, "prumerge_plus", selector="tome")
    with pytest.raises(ValueError, match=r"'shirg_fixed' presets k=768 .*pass them explicitly"):
        variant_settings("shirg_fixed", selector="pool_k")
    # Every preset parameter given, or a variant without any: the caller's parameters, nothing of the preset's.
    assert variant_settings("shirg_fixed", selector="pool_k", k=512).selector_params == {"k": 512}
    settings = variant_settings("lavida_672", selector="pool_k")
    assert (settings.selector, settings.selector_params, settings.resolution) == ("pool_k", {}, 672)
    assert VisualPath(tiny_model, "lavida_672", selector="pool_k", k=DEFAULT_K).selector.k == DEFAULT_K


def test_every_budget_default_is_the_one_default_k():
    from shirg_eval.selection import build_selector

    budgeted = [spec for spec in VARIANTS.values() if "k" in spec.selector_params]
    assert budgeted and all(spec.selector_params["k"] == DEFAULT_K for spec in budgeted)
    assert all(build_selector(spec.selector).params["k"] == DEFAULT_K for spec in budgeted)
