"""PEFT LoRA on LaViDa: attach, count, save (ZeRO-3 aware) and load-with-verification for inference.

An adapter directory holds PEFT's ``adapter_config.json`` + ``adapter_model.safetensors`` (safetensors only)
and ``shirg_adapter.json`` naming what it was trained for: variant, base checkpoint, sha256 of the base
``config.json``, LoRA targets and rank. :func:`load_adapter` refuses an adapter whose base or variant differs.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
SHIRG_META = "shirg_adapter.json"
LATEST = "latest"


class AdapterError(ValueError):
    """An adapter that is missing, incomplete, or made for another base model / variant."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_config_hash(checkpoint_path: str | Path) -> str:
    path = Path(checkpoint_path) / "config.json"
    if not path.is_file():
        raise AdapterError(f"base checkpoint {checkpoint_path} has no config.json to verify the adapter against")
    return sha256_file(path)


def lora_config(r: int, alpha: int, dropout: float, targets: str):
    from peft import LoraConfig

    # A regex string: PEFT full-matches it against each module name, so only the named layers get LoRA.
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, targets: str) -> nn.Module:
    """Freeze every base weight, then wrap the targeted Linear layers with LoRA (only LoRA params train)."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(model, lora_config(r, alpha, dropout, targets))
    for name, p in peft_model.named_parameters():
        if p.requires_grad and "lora_" not in name:
            raise RuntimeError(f"non-LoRA parameter {name} is trainable; base weights must stay frozen")
    return peft_model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; under ZeRO-3 ``ds_numel`` holds the real size."""
    trainable = total = 0
    for p in model.parameters():
        n = int(getattr(p, "ds_numel", p.numel()))
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def lora_param_count_from_dims(linears: list[tuple[int, int]], r: int) -> int:
    """LoRA adds A [r, in] and B [out, r] per targeted Linear: r * (in + out) each."""
    return sum(r * (i + o) for i, o in linears)


def _gather(params: list[nn.Parameter]):
    """Under ZeRO-3 parameters are partitioned (local tensors are empty): gather them for reading."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return nullcontext()


def adapter_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors (PEFT's key names), full-size on every rank, on CPU. Collective under ZeRO-3."""
    from peft import get_peft_model_state_dict

    lora_params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    with _gather(lora_params):
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    empty = [k for k, v in state.items() if v.numel() == 0]
    if empty or not state:
        raise RuntimeError(f"adapter state has empty tensors (ZeRO-3 not gathered?): {empty[:5]}")
    return state


def write_adapter(peft_model: nn.Module, state: dict[str, torch.Tensor], out_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write PEFT's adapter files (safetensors) and ``shirg_adapter.json`` into ``out_dir`` (rank 0 only)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(out))
    (out / SHIRG_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def adapter_meta(variant: str, base_path: str | Path, base_id: str, targets: str, r: int, alpha: int,
                 lora_lm: bool) -> dict[str, Any]:
    return {"variant": variant, "base_checkpoint": str(base_path), "base_id": str(base_id),
            "base_config_sha256": base_config_hash(base_path), "lora_targets": targets, "rank": r,
            "lora_alpha": alpha, "lora_lm": lora_lm, "format": 1}


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


def verify_adapter(adapter_dir: Path, model: nn.Module, variant: str | None) -> dict[str, Any]:
    missing = [n for n in (SHIRG_META, ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (adapter_dir / n).is_file()]
    if missing:
        raise AdapterError(f"adapter {adapter_dir} is incomplete: missing {', '.join(missing)}")
    meta = json.loads((adapter_dir / SHIRG_META).read_text())
    base = getattr(model, "checkpoint_path", None)
    if base is None:
        raise AdapterError("the model has no checkpoint_path; load it with LavidaModel.from_pretrained to verify "
                           "the adapter's base")
    model_hash = base_config_hash(base)
    trained_for = f"adapter trained for {meta.get('variant')} on base {meta.get('base_id')} " \
                  f"(config sha256 {str(meta.get('base_config_sha256'))[:12]})"
    if meta.get("base_config_sha256") != model_hash:
        raise AdapterError(f"{trained_for}, but the model is {base} (config sha256 {model_hash[:12]}): "
                           "different base model")
    if variant is not None and meta.get("variant") != variant:
        raise AdapterError(f"{trained_for}, but the requested variant is {variant}: retrain or pick the "
                           f"{meta.get('variant')} variant")
    return meta


def load_adapter(model: nn.Module, path: str | Path, variant: str | None = None,
                 merge: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Verify and load a trained LoRA onto ``model``; merged into the base weights (in place) for inference.

    ``path``: a ``checkpoint-STEP`` dir or a training output dir (its ``latest``). Returns the (merged) model and
    ``{path, sha256, variant, rank, ...}`` for the run record.
    """
    from peft import PeftModel

    adapter_dir = resolve_adapter_dir(path)
    meta = verify_adapter(adapter_dir, model, variant)
    checkpoint_path = getattr(model, "checkpoint_path", None)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    peft_model.eval()
    out = peft_model.merge_and_unload() if merge else peft_model
    if checkpoint_path is not None and getattr(out, "checkpoint_path", None) is None:
        out.checkpoint_path = checkpoint_path
    info = {"path": str(adapter_dir), "sha256": sha256_file(adapter_dir / ADAPTER_WEIGHTS),
            "variant": meta.get("variant"), "rank": meta.get("rank"), "base_id": meta.get("base_id"),
            "merged": merge}
    return out, info
