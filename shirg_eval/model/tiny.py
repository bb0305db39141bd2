"""A tiny random-init LaViDa checkpoint in the released layout, with an offline tokenizer.

Used by the tests, the demo and offline sweeps. Numbers it produces are meaningless as accuracy; latency and
token-count *ratios* between variants are real.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .config import RELEASE_GRID_PINPOINTS, SIGLIP_SO400M_ID, LavidaConfig, load_vision_config
from .prompting import FALLBACK_TEMPLATE, SYSTEM_PROMPT

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>"]


@dataclass
class TinyDims:
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mlp_hidden_size: int = 128
    vocab_size: int = 768
    vision_hidden: int = 48
    vision_intermediate: int = 96
    vision_heads: int = 4
    vision_layers_kept: int = 2


def _corpus() -> list[str]:
    # Words the synthetic tasks and prompts use, so the tiny tokenizer splits them into few pieces.
    words = ("what is the value of for in which category has highest lowest difference between total date name "
             "invoice number amount answer question single word phrase chart bar line pie document receipt form "
             "letter year percent sum average shows red blue green yellow circle square triangle image picture "
             "describe briefly caption a an and or of to with on at by from this that these those yes no").split()
    lines = [SYSTEM_PROMPT, " ".join(words), "0123456789 . , % $ - : / ( ) ? !", "user assistant system"]
    lines += [f"{w} {i}" for i, w in enumerate(words)] + [str(n) for n in range(0, 2000, 7)]
    return lines


def build_tokenizer(vocab_size: int = 768, extra_lines: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A small byte-level BPE with LaViDa's special tokens; ``extra_lines`` add task text to its corpus."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus() + list(extra_lines or []), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        mask_token="<|mdm_mask|>", additional_special_tokens=SPECIAL_TOKENS[3:], chat_template=FALLBACK_TEMPLATE,
        model_max_length=4096,
    )


def lavida_config_dict(dims: TinyDims, vocab: int, ids: dict[str, int], mm_hidden: int,
                       image_aspect_ratio: str = "anyres") -> dict:
    """A ``llava_llada`` config.json with the released model's settings and ``dims``' sizes."""
    return {
        "architectures": ["LlavaLladaForMaskedDiffusion"], "model_type": "llava_llada",
        "activation_type": "silu", "block_type": "llama", "layer_norm_type": "rms", "rms_norm_eps": 1e-5,
        "rope": True, "rope_full_precision": True, "rope_theta": 500000.0, "weight_tying": False,
        "include_bias": False, "include_qkv_bias": False, "bias_for_layer_norm": False, "scale_logits": False,
        "input_emb_norm": False, "alibi": False, "max_sequence_length": 4096,
        "d_model": dims.d_model, "n_heads": dims.n_heads, "n_kv_heads": dims.n_heads, "n_layers": dims.n_layers,
        "mlp_hidden_size": dims.mlp_hidden_size, "mlp_ratio": 4, "vocab_size": vocab, "embedding_size": vocab,
        "mask_token_id": ids["mask"], "eos_token_id": ids["eos"], "pad_token_id": ids["eos"],
        "mm_vision_tower": SIGLIP_SO400M_ID, "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": mm_hidden,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": image_aspect_ratio, "image_grid_pinpoints": [list(p) for p in RELEASE_GRID_PINPOINTS],
        "mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": None, "mm_newline_position": "grid",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 4096, "use_mm_proj": True, "torch_dtype": "float32",
    }


def _init_like_fixtures(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights that make generation position- and image-dependent (not near-uniform logits)."""
    for name, param in model.named_parameters():
        with torch.no_grad():
            if name.endswith("image_newline"):
                param.copy_(torch.randn(param.shape, generator=generator).to(torch.bfloat16).float())
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=generator))
            elif name.endswith("bias"):
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
            elif "embed" in name:
                param.copy_(torch.randn(param.shape, generator=generator))
            else:
                fan_in = math.prod(param.shape[1:]) if param.dim() > 1 else param.shape[0]
                scale = 3.0 if any(s in name for s in ("q_proj", "k_proj", "lm_head")) and "language" in name else 1.0
                param.copy_(scale * torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))


def make_tiny_checkpoint(out_dir: str | Path, seed: int = 0, dims: TinyDims | None = None,
                         image_aspect_ratio: str = "anyres", tokenizer: PreTrainedTokenizerFast | None = None,
                         init: Callable[[torch.nn.Module, torch.Generator], None] | None = None) -> Path:
    """Write a random-init LaViDa checkpoint (config.json, model.safetensors, SigLIP config, tokenizer).

    The default initialisation is made for the golden-fixture style tests (position- and image-dependent
    outputs from random weights); ``init`` replaces it (the reference model uses a training init).
    """
    from .lavida import LavidaModel
    from .loading import save_lavida

    dims = dims or TinyDims()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tokenizer(dims.vocab_size)
    vocab = len(tokenizer)
    ids = {"mask": tokenizer.convert_tokens_to_ids("<|mdm_mask|>"), "eos": tokenizer.eos_token_id}
    raw = lavida_config_dict(dims, vocab, ids, dims.vision_hidden, image_aspect_ratio)
    siglip = {"hidden_size": dims.vision_hidden, "intermediate_size": dims.vision_intermediate,
              "num_hidden_layers": dims.vision_layers_kept + 1, "num_attention_heads": dims.vision_heads,
              "num_channels": 3, "image_size": 384, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh",
              "layer_norm_eps": 1e-6}
    (out / "siglip_vision_config.json").write_text(json.dumps(siglip, indent=2) + "\n")
    config = LavidaConfig.from_dict(raw, load_vision_config(out, raw))
    torch.manual_seed(seed)
    model = LavidaModel(config)
    (init or _init_like_fixtures)(model, torch.Generator().manual_seed(seed))
    save_lavida(model, out)
    tokenizer.save_pretrained(out)
    return out


