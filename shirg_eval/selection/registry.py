"""Name -> Selector class registry.

Selectors register themselves at import time (``shirg_eval.selection.selectors`` imports every selector
module), so presets and CLIs refer to them by name only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Selector

__all__ = [
    "UnknownSelectorError",
    "available_selectors",
    "build_selector",
    "get_selector",
    "register_selector",
]

_REGISTRY: dict[str, type[Selector]] = {}

S = TypeVar("S", bound=type[Selector])


class UnknownSelectorError(ValueError):
    """Raised for a selector name that is not registered; the message lists the known names."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown selector {name!r}; known selectors: {', '.join(known) or '(none)'}")


def register_selector(name: str) -> Callable[[S], S]:
    """Class decorator: register ``cls`` under ``name`` and set ``cls.name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"selector name must be a non-empty string, got {name!r}")

    def deco(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Selector)):
            raise TypeError(f"@register_selector({name!r}) must decorate a Selector subclass, got {cls!r}")
        prev = _REGISTRY.get(name)
        # Re-registering the same class (module reload) is harmless; two classes under one name is a bug.
        if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"selector name {name!r} already registered by {prev.__module__}.{prev.__qualname__}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_selectors() -> list[str]:
    return sorted(_REGISTRY)


def get_selector(name: str) -> type[Selector]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSelectorError(name, available_selectors()) from None


def build_selector(name: str, **params: Any) -> Selector:
    """Instantiate a registered selector; unknown parameter names are a ValueError listing the valid ones."""
    cls = get_selector(name)
    sig = inspect.signature(cls.__init__)
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var_kw:
        valid = [p for p in sig.parameters if p != "self"]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"selector {name!r} got unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(valid) or '(none)'}"
            )
    return cls(**params)
