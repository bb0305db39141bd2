"""Named variants: which view(s) an image becomes and which selector trims the visual tokens.

``lavida`` is the released model's own path (anyres tiles, pooled, newlines). Every other variant runs one
square view through SigLIP (672 px with bicubic position-embedding interpolation, or 384 px) -- or, with
``anyres=True`` and a selector that supports it, LaViDa's anyres views unpooled -- then lets a selector choose
what the language model sees.

:func:`variant_settings` is the one place that turns a variant name and the caller's arguments into the settings a
:class:`~shirg_eval.visual.path.VisualPath` runs with (the preset's defaults filled in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..selection.base import DEFAULT_K
from ..selection.registry import get_selector

MIN_RESOLUTION, MAX_RESOLUTION = 14, 2048  # one SigLIP patch .. far above any view LaViDa was trained on


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
                    {"k": DEFAULT_K}),
        VariantSpec("shirg_original", "672 px, adaptive K {512,768,1024}, one-hop merge before selection, centre prior, scaffold", 672,
                    "shirg_original"),
        VariantSpec("pool_k", "672 px, equal-count average pooling to K tokens", 672, "pool_k", {"k": DEFAULT_K}),
        VariantSpec("random_k", "672 px, seeded random K with 4x4 coverage", 672, "random_k", {"k": DEFAULT_K}),
        # The field's reducers (one file each under selectors/); k = visual tokens the LM receives.
        VariantSpec("visionzip", "672 px, VisionZip: dominant by attention + merged contextual tokens", 672,
                    "visionzip", {"k": DEFAULT_K}),
        VariantSpec("divprune", "672 px, DivPrune: greedy max-min cosine diversity", 672, "divprune",
                    {"k": DEFAULT_K}),
        VariantSpec("dart", "672 px, DART (pre-LM): pivots + least-duplicated tokens", 672, "dart", {"k": DEFAULT_K}),
        VariantSpec("hired", "672 px (anyres=true: per-view budgets), HiRED: attention-guided dropping", 672,
                    "hired", {"k": DEFAULT_K}),
        VariantSpec("prumerge", "672 px, PruMerge: IQR attention outliers + merging", 672, "prumerge",
                    {"k": DEFAULT_K}),
        VariantSpec("prumerge_plus", "672 px, PruMerge+: outliers + spatial samples + merging", 672, "prumerge",
                    {"k": DEFAULT_K, "plus": True}),
        VariantSpec("tome", "672 px, ToMe: bipartite soft matching down to K", 672, "tome", {"k": DEFAULT_K}),
        VariantSpec("fastv", "672 px, FastV in the LM: rank by text attention after 2 layers, keep K", 672, "fastv",
                    {"k": DEFAULT_K}),
    )
}


class UnknownVariantError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")


def get_variant(name: str) -> VariantSpec:
    if name not in VARIANTS:
        raise UnknownVariantError(name)
    return VARIANTS[name]


@dataclass(frozen=True)
class VariantSettings:
    """What one visual path runs with: the variant's preset, overridden by the caller's arguments."""

    spec: VariantSpec
    selector: str | None  # None: LaViDa's release path
    selector_params: dict[str, Any]
    resolution: int | None
    view_mode: str
    anyres: bool


def variant_settings(variant: str, *, selector: str | None = None, resolution: int | None = None,
                     view_mode: str = "resize", anyres: bool = False, **selector_params: Any) -> VariantSettings:
    """The settings of ``variant`` with the caller's arguments applied (the one place a variant's defaults are set).

    Given parameters override the preset's. A ``selector=`` other than the preset's own would leave the preset's
    parameters to a selector they were not written for, so that is refused unless every preset parameter is
    given explicitly (or the variant has none, as ``lavida_672``).
    """
    spec = get_variant(variant)
    if spec.resolution is None and (selector or selector_params or resolution or anyres):
        given = sorted(selector_params) + [n for n, v in (("selector", selector), ("resolution", resolution),
                                                         ("anyres", anyres)) if v]
        raise ValueError(
            f"variant 'lavida' is the released path and takes no selector/k/resolution/anyres arguments "
            f"(got {given}); use lavida_672 / shirg_fixed / pool_k / random_k or a reducer instead"
        )
    if selector and selector != spec.selector:
        get_selector(selector)  # an unknown name is the first thing to say
        dropped = {n: v for n, v in spec.selector_params.items() if n not in selector_params}
        if dropped:
            settings = ", ".join(f"{n}={v}" for n, v in dropped.items())
            raise ValueError(
                f"variant {spec.name!r} presets {settings} for selector {spec.selector!r}, which selector="
                f"{selector!r} would not get; pass them explicitly for {selector!r} ({settings}), or start from a "
                f"variant without preset parameters (lavida_672 selector={selector})"
            )
    params = {**spec.selector_params, **selector_params}
    resolution = resolution or spec.resolution
    if resolution is not None and not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} px, got {resolution}")
    return VariantSettings(spec, selector or spec.selector, params, resolution, view_mode, bool(anyres))
