"""Named variants: which view(s) an image becomes and which selector trims the projected tokens.

``lavida`` is the released model's own path (anyres tiles, pooled, newlines). Every other variant runs one
square view through SigLIP (672 px with bicubic position-embedding interpolation, or 384 px), projects *all*
its tokens, then lets a selector choose what the language model sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.lavida import VisualSequence
from ..model.preprocess import ImageViews
from .registry import build_selector


@dataclass(frozen=True)
class VariantSpec:
    name: str
    description: str
    resolution: int | None = None  # None: LaViDa's release path (anyres / pad, from the checkpoint config)
    selector: str | None = None
    selector_params: dict[str, Any] = field(default_factory=dict)


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("lavida", "LaViDa as released: anyres tiles, 2x2 bilinear pooling, newlines (~980 tokens)"),
        VariantSpec("lavida_384", "one 384 px view, all 729 tokens, unpooled", 384, "full"),
        VariantSpec("lavida_672", "one 672 px view, all 2304 tokens (upper bound)", 672, "full"),
        VariantSpec("shirg_fixed", "672 px, K=768 with 4x4 coverage + 144-token scaffold", 672, "shirg_fixed",
                    {"k": 768}),
        VariantSpec("shirg_original", "672 px, adaptive K {512,768,1024}, one-hop merge before selection, centre prior, scaffold", 672,
                    "shirg_original"),
        VariantSpec("pool_k", "672 px, equal-count average pooling to K tokens", 672, "pool_k", {"k": 768}),
        VariantSpec("random_k", "672 px, seeded random K with 4x4 coverage", 672, "random_k", {"k": 768}),
    )
}


class UnknownVariantError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")


def get_variant(name: str) -> VariantSpec:
    if name not in VARIANTS:
        raise UnknownVariantError(name)
    return VARIANTS[name]


class VisualPath:
    """image -> views -> SigLIP -> projector -> selection: the visual block one variant feeds the LM.

    Split in two so that timings can exclude PIL preprocessing: :meth:`prepare` (CPU, image -> pixel views)
    and :meth:`encode` (model time: views -> visual sequence).
    """

    def __init__(self, model, variant: str = "lavida", *, selector: str | None = None, resolution: int | None = None,
                 view_mode: str = "resize", **selector_params: Any):
        self.model = model
        self.spec = get_variant(variant)
        self.resolution = resolution or self.spec.resolution
        if self.spec.resolution is None and (selector or selector_params or resolution):
            raise ValueError(
                f"variant 'lavida' is the released path and takes no selector/k/resolution arguments "
                f"(got {sorted(selector_params) + (['selector'] if selector else []) + (['resolution'] if resolution else [])}); "
                "use lavida_672 / shirg_fixed / pool_k / random_k with a selector instead"
            )
        self.selector_name = selector or self.spec.selector
        params = {**self.spec.selector_params, **selector_params}
        if self.selector_name is not None and selector and selector != self.spec.selector:
            params = dict(selector_params)  # another selector: the preset's parameters may not apply
        self.selector_params = params
        self.selector = build_selector(self.selector_name, **params) if self.selector_name else None
        self.view_mode = view_mode
        if self.resolution is not None and not 14 <= self.resolution <= 2048:
            raise ValueError(f"resolution must be between 14 and 2048 px, got {self.resolution}")

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        return {"variant": self.spec.name, "resolution": self.resolution, "selector": self.selector_name,
                "selector_params": dict(self.selector_params), "view_mode": self.view_mode}

    def prepare(self, image) -> ImageViews:
        proc = self.model.image_processor
        if self.resolution is None:
            mode = self.model.config.image_aspect_ratio
            return proc.anyres(image) if mode == "anyres" else proc.pad(image)
        return proc.single(image, self.resolution, self.view_mode)

    def encode(self, views: ImageViews, text_embeds: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> VisualSequence:
        model = self.model
        if self.resolution is None:
            embeds = model.release_embeds(views)
            return VisualSequence(embeds, views, info={**self.describe(), "n_views": int(views.pixel_values.shape[0])})
        tokens = model.encode_images(views.pixel_values)  # [1, H*W, D]: projector on every token first
        side = self.resolution // model.config.vision.patch_size  # SigLIP's conv floors (384 -> 27)
        if text_embeds is not None and text_embeds.dim() == 2:
            text_embeds = text_embeds[None]
        result = self.selector.select(tokens, (side, side), text_embeds=text_embeds, generator=generator)
        info = {**self.describe(), **result.info, "grid": [side, side]}
        return VisualSequence(result.tokens[0], views, grid_hw=(side, side), kept_indices=result.kept_indices[0],
                              info=info)

    def __call__(self, image, text_embeds: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> VisualSequence:
        return self.encode(self.prepare(image), text_embeds, generator)
