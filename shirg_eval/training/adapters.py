"""PEFT LoRA on LaViDa for training: attach, count and save (ZeRO-3 aware).

Loading an adapter for inference, and what its files are named, is :mod:`shirg_eval.model.adapters`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.adapters import ADAPTER_WEIGHTS, SHIRG_META, base_identity
from .distributed import zero3_gathered

META_FORMAT = 2  # 2: base weights digest recorded (format 1 had the config hash only)


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


def adapter_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors (PEFT's key names), full-size on every rank, on CPU. Collective under ZeRO-3."""
    from peft import get_peft_model_state_dict

    lora_params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    with zero3_gathered(lora_params):
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
            **base_identity(base_path), "lora_targets": targets, "rank": r, "lora_alpha": alpha,
            "lora_lm": lora_lm, "format": META_FORMAT}
