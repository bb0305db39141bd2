"""Loading a trained LoRA adapter for inference, verified against the base model it was trained on.

An adapter directory holds PEFT's ``adapter_config.json`` + ``adapter_model.safetensors`` (safetensors only)
and ``shirg_adapter.json`` naming what it was trained for: variant, base checkpoint, sha256 of the base
``config.json`` and of its weights (:mod:`.digest`), LoRA targets and rank. :func:`load_adapter` refuses an
adapter whose variant differs, or whose base config or weights differ unless ``allow_base_mismatch`` is given
(then the mismatch is recorded in what it returns). Attaching and saving adapters (training) is
:mod:`shirg_eval.training.adapters`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from torch import nn

from .digest import sha256_file, weights_identity

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
SHIRG_META = "shirg_adapter.json"
LATEST = "latest"
TRAINER_STATE = "trainer_state.json"  # the training step an adapter checkpoint was saved at
OVERRIDE_HINT = ("to load it anyway, pass allow_base_mismatch (--model_args allow_base_mismatch=true; "
                 "--allow_base_mismatch for train/lora.py and shirg-viz); the override is recorded in the run's "
                 "metadata")


class AdapterError(ValueError):
    """An adapter that is missing, incomplete, or made for another base model / variant."""


def base_config_hash(checkpoint_path: str | Path) -> str:
    path = Path(checkpoint_path) / "config.json"
    if not path.is_file():
        raise AdapterError(f"base checkpoint {checkpoint_path} has no config.json to verify the adapter against")
    return sha256_file(path)


def base_identity(checkpoint_path: str | Path) -> dict[str, Any]:
    """What names a base model: its config hash, weights digest and (hub snapshots) revision."""
    weights = weights_identity(checkpoint_path)
    return {"base_config_sha256": base_config_hash(checkpoint_path), "base_weights_sha256": weights.sha256,
            "base_revision": weights.revision}


def base_mismatch(meta: dict[str, Any], base: str | Path) -> dict[str, Any] | None:
    """None if ``base`` is the model the adapter was trained on, else what differs (adapter's vs model's)."""
    ours = base_identity(base)
    differs = {key: {"adapter": meta.get(key), "model": ours[key]}
               for key in ("base_config_sha256", "base_weights_sha256")
               if meta.get(key) is not None and meta.get(key) != ours[key]}
    return differs or None


def describe_mismatch(differs: dict[str, Any]) -> str:
    names = {"base_config_sha256": "config", "base_weights_sha256": "weights"}
    return ", ".join(f"{names[k]} sha256 {str(v['adapter'])[:12]} vs {str(v['model'])[:12]}"
                     for k, v in differs.items())


def resolve_adapter_dir(path: str | Path) -> Path:
    """A checkpoint dir (has ``shirg_adapter.json``) or a training output dir (follow ``latest``)."""
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"adapter path {path} does not exist")
    if (path / SHIRG_META).is_file() or (path / ADAPTER_WEIGHTS).is_file():
        return path
    latest = path / LATEST
    if latest.exists():
        target = path / latest.read_text().strip() if latest.is_file() and not latest.is_symlink() else latest.resolve()
        if not target.is_dir():
            raise AdapterError(f"{latest} points to {target}, which does not exist")
        return target
    raise AdapterError(f"{path} is neither an adapter checkpoint (no {SHIRG_META}) nor a training output dir "
                       f"(no '{LATEST}' file)")


def _trainer_step(adapter_dir: Path) -> int | None:
    state = adapter_dir / TRAINER_STATE
    try:
        return int(json.loads(state.read_text())["step"]) if state.is_file() else None
    except (ValueError, KeyError, TypeError):
        return None


SUPPORTED_PEFT_TYPES = ("LORA",)  # what train/lora.py writes, and what merge_and_unload folds into the base


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(f"{path} is not valid JSON ({err}); the adapter folder is damaged: retrain or copy it "
                           "again") from None
    if not isinstance(value, dict):
        raise AdapterError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def check_adapter_config(path: Path) -> None:
    """PEFT would fail on an unknown ``peft_type`` with a bare KeyError: name the file and what is supported."""
    peft_type = _read_json(path).get("peft_type")
    if peft_type not in SUPPORTED_PEFT_TYPES:
        raise AdapterError(f"{path}: peft_type {peft_type!r} is not supported; shirg-eval loads "
                           f"{', '.join(SUPPORTED_PEFT_TYPES)} adapters (what train/lora.py writes)")


def verify_adapter(adapter_dir: Path, model: nn.Module, variant: str | None,
                   allow_base_mismatch: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The adapter's metadata and, when allowed, how its base differs from ``model``'s (None: same base)."""
    missing = [n for n in (SHIRG_META, ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (adapter_dir / n).is_file()]
    if missing:
        raise AdapterError(f"adapter {adapter_dir} is incomplete: missing {', '.join(missing)}")
    meta = _read_json(adapter_dir / SHIRG_META)
    check_adapter_config(adapter_dir / ADAPTER_CONFIG)
    base = getattr(model, "checkpoint_path", None)
    if base is None:
        raise AdapterError("the model has no checkpoint_path; load it with LavidaModel.from_pretrained to verify "
                           "the adapter's base")
    trained_for = f"adapter trained for {meta.get('variant')} on base {meta.get('base_id')}"
    if variant is not None and meta.get("variant") != variant:
        raise AdapterError(f"{trained_for}, but the requested variant is {variant}: retrain or pick the "
                           f"{meta.get('variant')} variant")
    differs = base_mismatch(meta, base)
    if differs and not allow_base_mismatch:
        raise AdapterError(f"{trained_for}, but the model is {base}: different base model "
                           f"({describe_mismatch(differs)}). Use the base it was trained on; {OVERRIDE_HINT}")
    return meta, differs


def load_adapter(model: nn.Module, path: str | Path, variant: str | None = None, merge: bool = True,
                 allow_base_mismatch: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Verify and load a trained LoRA onto ``model``; merged into the base weights (in place) for inference.

    ``path``: a ``checkpoint-STEP`` dir or a training output dir (its ``latest``). Returns the (merged) model and
    ``{path, step, sha256, variant, rank, base_weights_sha256, base_mismatch, ...}`` for the run record; logs
    one line naming the adapter, its step, variant and base digest.
    """
    from peft import PeftModel

    adapter_dir = resolve_adapter_dir(path)
    meta, differs = verify_adapter(adapter_dir, model, variant, allow_base_mismatch)
    checkpoint_path = getattr(model, "checkpoint_path", None)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    peft_model.eval()
    out = peft_model.merge_and_unload() if merge else peft_model
    if checkpoint_path is not None and getattr(out, "checkpoint_path", None) is None:
        out.checkpoint_path = checkpoint_path
    step = _trainer_step(adapter_dir)
    base_digest = meta.get("base_weights_sha256")
    info = {"path": str(adapter_dir), "step": step, "sha256": sha256_file(adapter_dir / ADAPTER_WEIGHTS),
            "variant": meta.get("variant"), "rank": meta.get("rank"), "base_id": meta.get("base_id"),
            "base_weights_sha256": base_digest, "base_mismatch": differs, "merged": merge}
    if base_digest is None:
        note = "base weights unverified (adapter made before weight digests)"
    else:
        note = f"base weights sha256 {base_digest[:12]}"
    if differs:
        note += f"; BASE MISMATCH allowed by allow_base_mismatch ({describe_mismatch(differs)})"
    print(f"[shirg-eval] LoRA {adapter_dir}: step {step if step is not None else '?'}, variant "
          f"{meta.get('variant')}, {note}", file=sys.stderr, flush=True)
    return out, info
