"""Named variants: which view(s) an image becomes and which selector trims the visual tokens.

``lavida`` is the released model's own path (anyres tiles, pooled, newlines). Every other variant runs one
square view through SigLIP (672 px with bicubic position-embedding interpolation, or 384 px) -- or, with
``anyres=True`` and a selector that supports it, LaViDa's anyres views unpooled -- then lets a selector choose
what the language model sees. The selector's declared needs (:mod:`.context`) decide what is computed: projected
tokens (the default), pre-projector features, one or two tower layers' attention, or an in-LM prefill (FastV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..model.lavida import IMAGE_TOKEN_INDEX, VisualSequence
from ..model.preprocess import ImageViews
from ..model.sampler import StageTimer, mark
from .inputs import selector_inputs
from .registry import available_selectors, build_selector, get_selector

if TYPE_CHECKING:
    from .selectors.fastv import FastVPrefill


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
        # The field's reducers (one file each under selectors/); k = visual tokens the LM receives.
        VariantSpec("visionzip", "672 px, VisionZip: dominant by attention + merged contextual tokens", 672,
                    "visionzip", {"k": 768}),
        VariantSpec("divprune", "672 px, DivPrune: greedy max-min cosine diversity", 672, "divprune", {"k": 768}),
        VariantSpec("dart", "672 px, DART (pre-LM): pivots + least-duplicated tokens", 672, "dart", {"k": 768}),
        VariantSpec("hired", "672 px (anyres=true: per-view budgets), HiRED: attention-guided dropping", 672,
                    "hired", {"k": 768}),
        VariantSpec("prumerge", "672 px, PruMerge: IQR attention outliers + merging", 672, "prumerge", {"k": 768}),
        VariantSpec("prumerge_plus", "672 px, PruMerge+: outliers + spatial samples + merging", 672, "prumerge",
                    {"k": 768, "plus": True}),
        VariantSpec("tome", "672 px, ToMe: bipartite soft matching down to K", 672, "tome", {"k": 768}),
        VariantSpec("fastv", "672 px, FastV in the LM: rank by text attention after 2 layers, keep K", 672, "fastv",
                    {"k": 768}),
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
                 view_mode: str = "resize", anyres: bool = False, **selector_params: Any):
        self.model = model
        self.spec = get_variant(variant)
        self.resolution = resolution or self.spec.resolution
        if self.spec.resolution is None and (selector or selector_params or resolution or anyres):
            given = sorted(selector_params) + [n for n, v in (("selector", selector), ("resolution", resolution),
                                                             ("anyres", anyres)) if v]
            raise ValueError(
                f"variant 'lavida' is the released path and takes no selector/k/resolution/anyres arguments "
                f"(got {given}); use lavida_672 / shirg_fixed / pool_k / random_k or a reducer instead"
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
        self.anyres = bool(anyres)
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
