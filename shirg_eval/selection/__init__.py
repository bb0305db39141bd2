"""Visual-token selection: registry, scoring and the built-in selectors.

``import shirg_eval.selection`` registers every selector under ``selectors/``.
"""

from . import selectors as _selectors  # noqa: F401  (import registers the built-in selectors)
from .base import SelectionResult, Selector
from .registry import (
    UnknownSelectorError,
    available_selectors,
    build_selector,
    get_selector,
    register_selector,
)
from .scoring import relevance_score, saliency, standardize, text_relevance

__all__ = [
    "SelectionResult",
    "Selector",
    "UnknownSelectorError",
    "available_selectors",
    "build_selector",
    "get_selector",
    "register_selector",
    "relevance_score",
    "saliency",
    "standardize",
    "text_relevance",
]
