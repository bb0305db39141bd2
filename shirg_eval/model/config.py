"""LaViDa configuration: the released ``config.json`` plus the SigLIP dims it does not carry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import LlamaConfig, SiglipVisionConfig

SIGLIP_SO400M_ID = "google/siglip-so400m-patch14-384"
# google/siglip-so400m-patch14-384 vision dims. LaViDa's config names the tower but does not describe it.
SIGLIP_SO400M = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    num_channels=3,
    image_size=384,
    patch_size=14,
    hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6,
    attention_dropout=0.0,
)
SIGLIP_CONFIG_FILENAME = "siglip_vision_config.json"
RELEASE_GRID_PINPOINTS = [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]]


class CheckpointError(ValueError):
    """A checkpoint that does not match the LaViDa layout (missing files, keys or shapes)."""


class CheckpointNotFoundError(CheckpointError):
    """Neither a local folder nor a downloadable hub id. The message names the option of the command at hand:
    ``pretrained=`` (``--model_args``) by default; ``with_flag("--pretrained")`` for the CLIs that spell it so."""

    def __init__(self, checkpoint: str, reason: str, flag: str = "pretrained="):
        self.checkpoint, self.reason, self.flag = checkpoint, reason, flag
        super().__init__(checkpoint, reason, flag)

    def with_flag(self, flag: str) -> CheckpointNotFoundError:
        return CheckpointNotFoundError(self.checkpoint, self.reason, flag)

    def __str__(self) -> str:
        sep = "" if self.flag.endswith("=") else " "
        return (f"checkpoint {self.checkpoint!r}: {self.reason}. Pass {self.flag}{sep}/path/to/a/local/checkpoint "
                "(e.g. one made by `shirg-make-tiny DIR`)")


@dataclass
class LavidaConfig:
    """The fields of LaViDa's ``llava_llada`` config that the forward pass reads, plus the vision config.

    ``vision`` holds the tower *as LaViDa runs it*: the last encoder layer already removed (features are the
    output of layer -2 of the full tower), no pooling head.
    """

    d_model: int
    n_heads: int
    n_kv_heads: int
    n_layers: int
    mlp_hidden_size: int
    vocab_size: int
    mm_hidden_size: int
    vision: SiglipVisionConfig
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    max_sequence_length: int = 4096
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    pad_token_id: int = 126081
    image_aspect_ratio: str = "anyres"
    image_grid_pinpoints: list[list[int]] = field(default_factory=lambda: [list(p) for p in RELEASE_GRID_PINPOINTS])
    mm_patch_merge_type: str = "spatial_unpad"
    mm_spatial_pool_mode: str = "bilinear"
    tokenizer_model_max_length: int = 4096
    raw: dict[str, Any] = field(default_factory=dict)  # the full config.json, written back verbatim on save

    def __post_init__(self) -> None:
        checks = {
            "block_type": ("llama",),
            "activation_type": ("silu", "swiglu"),
            "layer_norm_type": ("rms",),
            "mm_projector_type": ("mlp2x_gelu",),
        }
        for key, allowed in checks.items():
            value = self.raw.get(key, allowed[0])
            if value not in allowed:
                raise CheckpointError(f"config.json: {key}={value!r} is not supported (expected one of {allowed})")
        for key in ("weight_tying", "include_bias", "scale_logits", "input_emb_norm", "alibi"):
            if self.raw.get(key):
                raise CheckpointError(f"config.json: {key}=true is not part of the released LaViDa-LLaDA model")
        if self.d_model % self.n_heads:
            raise CheckpointError(f"config.json: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def vision_grid(self) -> int:
        """Patches per side of one native-resolution view (27 for SigLIP-384/14)."""
        return self.vision.image_size // self.vision.patch_size

    def llama_config(self, attn_implementation: str | None = None) -> LlamaConfig:
        """LLaDA's block is Llama's (RMSNorm, SwiGLU, rotate-half RoPE, no biases); only the mask differs."""
        cfg = LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.mlp_hidden_size,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads,
            hidden_act="silu",
            max_position_embeddings=self.max_sequence_length,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            attention_dropout=0.0,
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
        )
        if attn_implementation:
            cfg._attn_implementation = attn_implementation
        return cfg

    @classmethod
    def from_dict(cls, raw: dict[str, Any], vision: SiglipVisionConfig) -> LavidaConfig:
        missing = [k for k in ("d_model", "n_heads", "n_layers", "mlp_hidden_size", "mm_hidden_size") if k not in raw]
        if missing:
            raise CheckpointError(f"config.json lacks {missing}: not a LaViDa-LLaDA (llava_llada) config")
        vocab = raw.get("embedding_size") or raw.get("vocab_size")
        return cls(
            d_model=raw["d_model"],
            n_heads=raw["n_heads"],
            n_kv_heads=raw.get("n_kv_heads") or raw["n_heads"],
            n_layers=raw["n_layers"],
            mlp_hidden_size=raw["mlp_hidden_size"],
            vocab_size=vocab,
            mm_hidden_size=raw["mm_hidden_size"],
            vision=vision,
            rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
            rope_theta=raw.get("rope_theta", 500000.0),
            max_sequence_length=raw.get("max_sequence_length", 4096),
            mask_token_id=raw.get("mask_token_id", 126336),
            eos_token_id=raw.get("eos_token_id", 126081),
            pad_token_id=raw.get("pad_token_id", raw.get("eos_token_id", 126081)),
            image_aspect_ratio=raw.get("image_aspect_ratio", "anyres"),
            image_grid_pinpoints=raw.get("image_grid_pinpoints") or [list(p) for p in RELEASE_GRID_PINPOINTS],
            mm_patch_merge_type=raw.get("mm_patch_merge_type", "spatial_unpad"),
            mm_spatial_pool_mode=raw.get("mm_spatial_pool_mode", "bilinear"),
            tokenizer_model_max_length=raw.get("tokenizer_model_max_length", 4096),
            raw=dict(raw),
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> LavidaConfig:
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise CheckpointError(f"{path}: no config.json (expected a LaViDa checkpoint directory)")
        try:
            raw = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{cfg_file}: not valid JSON ({err})") from err
        return cls.from_dict(raw, load_vision_config(path, raw))


def load_vision_config(path: Path, raw: dict[str, Any]) -> SiglipVisionConfig:
    """SigLIP config as LaViDa runs it (last layer dropped, no head).

    A ``siglip_vision_config.json`` in the checkpoint directory or beside it wins (it gives the layer count
    *before* the drop, as the tower was constructed); otherwise the tower named in the config must be so400m.
    """
    for candidate in (path / SIGLIP_CONFIG_FILENAME, path.parent / SIGLIP_CONFIG_FILENAME):
        if candidate.is_file():
            spec = {k: v for k, v in json.loads(candidate.read_text()).items() if k in SIGLIP_SO400M}
            break
    else:
        tower = raw.get("mm_vision_tower", SIGLIP_SO400M_ID)
        if tower != SIGLIP_SO400M_ID:
            raise CheckpointError(
                f"vision tower {tower!r} is not {SIGLIP_SO400M_ID}, and no {SIGLIP_CONFIG_FILENAME} "
                f"describes it in {path} or its parent"
            )
        spec = dict(SIGLIP_SO400M)
    spec["num_hidden_layers"] = int(spec["num_hidden_layers"]) - 1  # LaViDa deletes the last encoder layer
    return SiglipVisionConfig(**spec, vision_use_head=False)
