"""Importing this package registers every built-in selector."""

from . import (
    dart,
    divprune,
    fastv,
    full,
    hired,
    pool_k,
    prumerge,
    random_k,
    shirg_fixed,
    shirg_original,
    tome,
    visionzip,
)

__all__ = [
    "dart",
    "divprune",
    "fastv",
    "full",
    "hired",
    "pool_k",
    "prumerge",
    "random_k",
    "shirg_fixed",
    "shirg_original",
    "tome",
    "visionzip",
]
