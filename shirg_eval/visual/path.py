"""The visual path of one variant (:mod:`.variants`): image -> views -> SigLIP -> projector -> selection.

The selector's declared needs (:mod:`shirg_eval.selection.context`) decide what is computed (:mod:`.inputs`):
projected tokens (the default), pre-projector features, one or two tower layers' attention, or an in-LM prefill
(FastV).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..model.lavida import IMAGE_TOKEN_INDEX, VisualSequence
from ..model.preprocess import ImageViews
from ..model.sampler import StageTimer, mark
from ..selection.registry import available_selectors, build_selector, get_selector
from .inputs import selector_inputs
from .variants import variant_settings

if TYPE_CHECKING:
    from ..selection.selectors.fastv import FastVPrefill


class VisualPath:
    """image -> views -> SigLIP -> projector -> selection: the visual block one variant feeds the LM.

    Split in two so that timings can exclude PIL preprocessing: :meth:`prepare` (CPU, image -> pixel views)
    and :meth:`encode` (model time: views -> visual sequence).
    """

    def __init__(self, model, variant: str = "lavida", *, selector: str | None = None, resolution: int | None = None,
                 view_mode: str = "resize", anyres: bool = False, **selector_params: Any):
        self.model = model
        settings = variant_settings(variant, selector=selector, resolution=resolution, view_mode=view_mode,
                                    anyres=anyres, **selector_params)
        self.spec = settings.spec
        self.resolution = settings.resolution
        self.selector_name = settings.selector
        self.selector_params = settings.selector_params
        self.selector = build_selector(self.selector_name, **self.selector_params) if self.selector_name else None
        self.view_mode = settings.view_mode
        self.anyres = settings.anyres
        if self.anyres and self.selector is not None and not self.selector.needs.multi_view:
            multi = [n for n in available_selectors() if get_selector(n).needs.multi_view]
            raise ValueError(
                f"selector {self.selector_name!r} works on one square grid and does not take anyres=true; "
                f"selectors that do: {', '.join(multi)}"
            )

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        info = {"variant": self.spec.name, "resolution": None if self.anyres else self.resolution,
                "selector": self.selector_name, "selector_params": dict(self.selector_params),
                "view_mode": self.view_mode}
        if self.anyres:
            info["anyres"] = True
        return info

    @property
    def in_lm(self) -> bool:
        """Whether the selector chooses inside the LM prefill (FastV) rather than on the visual side."""
        return self.selector is not None and self.selector.needs.lm_layers > 0

    def prepare(self, image) -> ImageViews:
        proc = self.model.image_processor
        if self.anyres:
            return proc.anyres(image)
        if self.resolution is None:
            mode = self.model.config.image_aspect_ratio
            return proc.anyres(image) if mode == "anyres" else proc.pad(image)
        return proc.single(image, self.resolution, self.view_mode)

    def encode(self, views: ImageViews, text_embeds: torch.Tensor | None = None,
               generator: torch.Generator | None = None, timer: StageTimer | None = None) -> VisualSequence:
        """Model time: views -> visual sequence. ``timer`` (optional) closes the stages ``vision`` (SigLIP),
        ``projector`` and ``selection`` (the selector, or LaViDa's pooling and anyres layout)."""
        model = self.model
        if self.resolution is None and not self.anyres:
            # LaViDa's release_embeds, stage by stage (the same ops in the same order)
            features = model.encode_views(views.pixel_values)
            mark(timer, "vision")
            projected = model.project(features)
            mark(timer, "projector")
            embeds = model.layout_block(model.pool_2d(projected, mode=model.config.mm_spatial_pool_mode), views)
            mark(timer, "selection")
            return VisualSequence(embeds, views, info={**self.describe(), "n_views": int(views.pixel_values.shape[0])})
        inputs = selector_inputs(model, views, self.selector.needs_for(self.anyres), anyres=self.anyres, timer=timer)
        if text_embeds is not None and text_embeds.dim() == 2:
            text_embeds = text_embeds[None]
        if inputs.in_feature_space:
            text_embeds = None  # LM-width text cannot meet pre-projector features; no such selector reads text
        result = self.selector(inputs.tokens, inputs.grid_hw, text_embeds=text_embeds, generator=generator,
                               context=inputs.context)
        mark(timer, "selection")
        embeds = model.project(result.tokens[0]) if inputs.in_feature_space else result.tokens[0]
        mark(timer, "projector")  # feature-space selectors: the kept tokens' projection
        info = {**self.describe(), **result.info, "grid": list(inputs.grid_hw)}
        if self.anyres:
            info["n_views"] = int(views.pixel_values.shape[0])
        return VisualSequence(embeds, views, grid_hw=inputs.grid_hw, kept_indices=result.kept_indices[0], info=info)

    def lm_prefill(self, prompt_ids: torch.Tensor, visual: VisualSequence) -> FastVPrefill | None:
        """The sampler's ``prefill`` hook for an in-LM selector (FastV) on this prompt, else None."""
        if not self.in_lm:
            return None
        ids = prompt_ids.flatten()
        start = int((ids == IMAGE_TOKEN_INDEX).nonzero()[0])
        return self.selector.prefill_for((start, start + visual.n_tokens))

    def __call__(self, image, text_embeds: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> VisualSequence:
        return self.encode(self.prepare(image), text_embeds, generator)
