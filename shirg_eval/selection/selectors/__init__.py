"""Importing this package registers every built-in selector."""

from . import full, pool_k, random_k, shirg_fixed, shirg_original

__all__ = ["full", "pool_k", "random_k", "shirg_fixed", "shirg_original"]
