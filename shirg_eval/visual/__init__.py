"""The visual path, between the selectors (``selection/``) and the pipeline: image -> views -> SigLIP -> projector
-> selection, for a named variant.

``variants`` (the presets and :func:`~.variants.variant_settings`, the one place a variant's defaults are set),
``path`` (:class:`~.path.VisualPath`), ``inputs`` (a selector's declared needs computed from the tower) and ``viz``
(pictures of a selection).
"""

from .path import VisualPath
from .variants import (
           VARIANTS,
           UnknownVariantError,
           VariantSettings,
           VariantSpec,
           get_variant,
           variant_settings,
)

__all__ = ["VARIANTS", "UnknownVariantError", "VariantSettings", "VariantSpec", "VisualPath", "get_variant",
           "variant_settings"]
