"""A run's :class:`~shirg_eval.records.RunIdentity`: what it computed, with every default filled in.

The model builds it from its parsed ``ModelArgs`` and what the pipeline loaded; the report reads it from the
samples' ``run_meta`` -- or, for results written before identities were recorded, derives it here from their
``run_meta`` and ``--model_args``, so old run folders still build a leaderboard. Both go through
:func:`normalised_settings`, so ``""``, ``k=768`` and ``k=768,seed=0,prefix_cache=true`` are one identity for
``shirg_fixed``.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

from ..records import INFRASTRUCTURE, LoraRecord, RunIdentity, RunMeta, identity_role
from .model_args import ModelArgs, parse_model_args

_NOT_APPLYING = {"threshold": ("decoding", "threshold"), "compile_bucket": ("compile", True)}  # name: (when, value)


def setting_names() -> tuple[str, ...]:
    """ModelArgs fields that are settings of the computation (neither infrastructure nor resolved)."""
    return tuple(f.name for f in fields(ModelArgs) if identity_role(f.metadata) is None)


def _variant_defaults(variant: str, args: ModelArgs) -> dict[str, Any]:
    """The values the variant's preset and its selector take for arguments left unset."""
    # The one place the report side reads the variant presets.
    from ..selection.registry import get_selector
    from ..visual.variants import VARIANTS

    spec = VARIANTS.get(variant)
    if spec is None:  # a variant this version does not know (an old run): only ModelArgs' own defaults
        return {}
    selector = args.selector or spec.selector
    out: dict[str, Any] = {"selector": selector, "resolution": spec.resolution, "anyres": False}
    if selector is None:
        return out
    if selector == spec.selector:  # another selector is given them explicitly (visual.variants.variant_settings)
        out.update({k: v for k, v in spec.selector_params.items() if k in ModelArgs.__dataclass_fields__})
    signature = inspect.signature(get_selector(selector).__init__)
    for name, param in signature.parameters.items():
        if name in ModelArgs.__dataclass_fields__ and param.default is not inspect.Parameter.empty:
            out.setdefault(name, param.default)
    return out


def normalised_settings(variant: str, args: ModelArgs) -> dict[str, Any]:
    """Every setting of ``args`` with its default filled in; arguments that do not apply are dropped."""
    values = {name: getattr(args, name) for name in setting_names()}
    for name, default in _variant_defaults(variant, args).items():
        if values.get(name) is None:
            values[name] = default
    for name, (when, value) in _NOT_APPLYING.items():
        if values.get(when) != value:
            values.pop(name, None)
    return dict(sorted(values.items()))


def default_settings(variant: str) -> dict[str, Any]:
    """The settings of a run given no model arguments (a row label shows only what differs from these)."""
    return normalised_settings(variant, ModelArgs())


def run_identity(variant: str, args: ModelArgs, *, base_sha256: str | None, lora: str | None,
                 lora_sha256: str | None, dtype: str | None, attn_implementation: str | None) -> RunIdentity:
    """``args``' settings normalised, with what actually ran: the weights' digest, the LoRA loaded (its resolved
    folder), the dtype and attention kernel used."""
    return RunIdentity(variant=variant, settings=normalised_settings(variant, args), pretrained=str(args.pretrained),
                       base_sha256=base_sha256, lora=lora, lora_sha256=lora_sha256, dtype=dtype,
                       attn_implementation=attn_implementation)


def _base_sha256(checkpoint: str | None) -> str | None:
    """The base weights' digest (hashed once per checkpoint, then cached); None for a model built in memory."""
    from ..model.digest import weights_identity
    from ..model.loading import CheckpointError

    if not checkpoint:
        return None
    try:
        return weights_identity(checkpoint).sha256
    except (CheckpointError, OSError):
        return None


def run_meta(variant: str, args: ModelArgs, described: dict[str, Any]) -> RunMeta:
    """The run's meta: the pipeline's description (``ShirgPipeline.describe()``), how answers are decoded, and
    the run's identity."""
    lora = LoraRecord.from_json(described["lora"]) if described.get("lora") else None
    identity = run_identity(variant, args, base_sha256=_base_sha256(described.get("checkpoint_path")),
                            lora=lora.path if lora else None, lora_sha256=lora.sha256 if lora else None,
                            dtype=described.get("dtype"), attn_implementation=described.get("attn_implementation"))
    return RunMeta(**{**described, "lora": lora}, prefix_cache=args.prefix_cache, kv_dtype=args.kv_dtype,
                   batch_size=args.batch_size, decoding=args.decoding,
                   latency_meaning="batch wall time; amortized_latency_ms = latency / batch_size",
                   compile=args.compile, threshold=args.threshold if args.decoding == "threshold" else None,
                   compile_bucket=args.compile_bucket if args.compile else None, identity=identity)


def _coerce(value: str) -> Any:
    """A ``key=value`` string as lmms-eval passes it to a model ("true" -> bool, digits -> int, else float)."""
    from lmms_eval.utils import handle_arg_string

    return handle_arg_string(value)


def legacy_identity(variant: str, model_args: dict[str, str], meta: dict[str, Any]) -> RunIdentity:
    """The identity of a run from before identities were recorded: its ``--model_args`` (strings) and the
    samples' ``run_meta``, whose resolved values (dtype, kv dtype, batch size, LoRA) win over the arguments."""
    infrastructure = {f.name for f in fields(ModelArgs) if identity_role(f.metadata) == identity_role(INFRASTRUCTURE)}
    raw: dict[str, Any] = {k: _coerce(v) for k, v in model_args.items()
                           if k in ModelArgs.__dataclass_fields__ and k not in infrastructure}
    for name in ("kv_dtype", "batch_size", "prefix_cache", "decoding", "threshold", "compile", "seed"):
        if meta.get(name) not in (None, ""):
            raw[name] = meta[name]
    lora = meta.get("lora") or raw.get("lora")
    lora_sha256 = meta.get("lora_sha256")
    if isinstance(lora, dict):  # run_meta records {"path": ..., "sha256": ...}
        lora, lora_sha256 = lora.get("path"), lora.get("sha256")
    raw["lora"] = None if lora in (None, "", "none", "None", "null") else str(lora)
    try:
        args = parse_model_args(variant, raw)
    except ValueError:  # arguments this version refuses: keep them as written, without defaults
        return RunIdentity(variant, dict(sorted(raw.items())), str(raw.get("pretrained", "")), None, raw["lora"],
                           lora_sha256, meta.get("dtype") or raw.get("dtype"), meta.get("attn_implementation"))
    return run_identity(variant, args, base_sha256=meta.get("base_weights_sha256"), lora=raw["lora"],
                        lora_sha256=lora_sha256,
                        dtype=meta.get("dtype") or args.dtype,
                        attn_implementation=meta.get("attn_implementation") or args.attn_implementation)
