"""One leaderboard row per computation: :class:`RowKey`, derived from a run's :class:`RunIdentity`.

The key holds what tells two computations apart, as the row label shows it: the settings that differ from the
variant's defaults (``k=576``), and the base the numbers were computed with -- checkpoint, weights' dtype, KV-cache
storage, attention kernel and batch size (it changes what latency means). Batch 1 and the default KV storage
(``auto``) are left out of the label, so rows from before batching and batch-1 rows are one row. The weights'
and the LoRA's digests are part of the key but not of the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shirg_eval.harness.identity import default_settings
from shirg_eval.records import RunIdentity

# The settings shown in the label's {base} part rather than its [settings] part, with the values left out.
BASE_DEFAULTS = {"kv_dtype": "auto", "batch_size": "1"}
_DIGESTS = (("weights", "base_sha256"), ("lora", "lora_sha256"))  # label name, RowKey field
# Display order of known variants; others follow alphabetically.
VARIANT_ORDER = ("lavida", "lavida_384", "lavida_672", "shirg_original", "shirg_fixed", "pool_k", "random_k")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def _canonical(parts: dict[str, Any]) -> str:
    return ",".join(f"{name}={_text(value)}" for name, value in parts.items())


@dataclass(frozen=True)
class RowKey:
    variant: str
    lora: str | None  # the LoRA as named
    settings: str  # the settings that differ from the variant's defaults ("coverage=false,k=512"); "" when none
    base: str  # "pretrained=...,dtype=float32" (+ kv_dtype, attn_implementation, batch_size when not default)
    base_sha256: str | None = None
    lora_sha256: str | None = None

    @classmethod
    def of(cls, identity: RunIdentity) -> RowKey:
        defaults = default_settings(identity.variant)
        settings = {name: value for name, value in identity.settings.items()
                    if name not in BASE_DEFAULTS and (name not in defaults or value != defaults[name])}
        base = {"pretrained": identity.pretrained, "dtype": identity.dtype, "kv_dtype": identity.kv_dtype,
                "attn_implementation": identity.attn_implementation, "batch_size": identity.batch_size}
        shown = {name: value for name, value in base.items()
                 if value not in (None, "") and _text(value) != BASE_DEFAULTS.get(name)}
        return cls(identity.variant, identity.lora, _canonical(settings), _canonical(shown), identity.base_sha256,
                   identity.lora_sha256)

    def base_parts(self) -> dict[str, str]:
        return dict(part.split("=", 1) for part in self.base.split(",") if "=" in part)

    def label(self, with_base: bool = False) -> str:
        """``variant[settings]@lora``; `` {base}`` appended on request (when rows differ only by their base)."""
        label = self.variant
        if self.settings:
            label += f"[{self.settings}]"
        if self.lora:
            label += f"@{self.lora}"
        if with_base and self.base:
            label += f" {{{self.base}}}"
        return label

    def sort_key(self) -> tuple[Any, ...]:
        rank = VARIANT_ORDER.index(self.variant) if self.variant in VARIANT_ORDER else len(VARIANT_ORDER)
        return (rank, self.variant, self.lora or "", self.settings, self.base, self.base_sha256 or "",
                self.lora_sha256 or "")


def sort_key(key: RowKey) -> tuple[Any, ...]:
    return key.sort_key()


def varying_base(keys: Sequence[RowKey]) -> tuple[dict[RowKey, str], dict[str, str]]:
    """Per row, the base components that differ between rows ("dtype=bfloat16", a default named when another row
    differs from it: "kv_dtype=auto"); and the ones all rows share."""
    parts = {k: {**BASE_DEFAULTS, **k.base_parts()} for k in keys}
    names = sorted({n for k in keys for n in k.base_parts()})
    varying = [n for n in names if len({p.get(n) for p in parts.values()}) > 1]
    common = {n: v for n in names if n not in varying for v in {p.get(n) for p in parts.values()} if v}
    return {k: ",".join(f"{n}={parts[k].get(n, '?')}" for n in varying) for k in keys}, common


def row_labels(keys: Sequence[RowKey]) -> dict[RowKey, str]:
    """``variant[settings]@lora``, plus ``{the base components that vary}`` when rows differ in their base."""
    differing, _ = varying_base(keys)
    plain = {k: k.label() + (f" {{{differing[k]}}}" if differing[k] else "") for k in keys}
    labels = dict(plain)
    for k in keys:  # rows told apart only by a digest (the same path held other weights): name the digests
        twins = [o for o in keys if plain[o] == plain[k]]
        shown = [f"{name}={(getattr(k, attr) or '?')[:12]}" for name, attr in _DIGESTS
                 if len({getattr(o, attr) for o in twins}) > 1]
        if shown:
            labels[k] += f" <{','.join(shown)}>"
    return labels
