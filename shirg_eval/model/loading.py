"""Read and write checkpoints in LaViDa's released layout by key mapping (safetensors only, no remote code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors import safe_open
from safetensors.torch import save_file

from .config import SIGLIP_CONFIG_FILENAME, CheckpointError, CheckpointNotFoundError, LavidaConfig

DEFAULT_PRETRAINED = "jacklishufan/lavida-llada-v1.0-instruct"

_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
# One table, both directions: (LaViDa name, our name). ``{i}`` is a block index, ``{rest}`` any suffix.
# LLaDA's block-level names map onto transformers' Llama names.
_NAME_PAIRS: list[tuple[str, str]] = [
    ("model.transformer.wte.weight", "language_model.model.embed_tokens.weight"),
    ("model.transformer.ln_f.weight", "language_model.model.norm.weight"),
    ("model.transformer.ff_out.weight", "language_model.lm_head.weight"),
    ("model.transformer.blocks.{i}.q_proj.weight", "language_model.model.layers.{i}.self_attn.q_proj.weight"),
    ("model.transformer.blocks.{i}.k_proj.weight", "language_model.model.layers.{i}.self_attn.k_proj.weight"),
    ("model.transformer.blocks.{i}.v_proj.weight", "language_model.model.layers.{i}.self_attn.v_proj.weight"),
    ("model.transformer.blocks.{i}.attn_out.weight", "language_model.model.layers.{i}.self_attn.o_proj.weight"),
    ("model.transformer.blocks.{i}.ff_proj.weight", "language_model.model.layers.{i}.mlp.gate_proj.weight"),
    ("model.transformer.blocks.{i}.up_proj.weight", "language_model.model.layers.{i}.mlp.up_proj.weight"),
    ("model.transformer.blocks.{i}.ff_out.weight", "language_model.model.layers.{i}.mlp.down_proj.weight"),
    ("model.transformer.blocks.{i}.attn_norm.weight", "language_model.model.layers.{i}.input_layernorm.weight"),
    ("model.transformer.blocks.{i}.ff_norm.weight",
     "language_model.model.layers.{i}.post_attention_layernorm.weight"),
    ("model.mm_projector.{rest}", "mm_projector.{rest}"),
    ("model.image_newline", "image_newline"),
    (_VISION_PREFIX + "{rest}", "vision_tower.{rest}"),
]


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{rest\}", r"(?P<rest>.+)")
    return re.compile(regex + r"\Z")


_TO_OURS = [(_pattern(lavida), ours) for lavida, ours in _NAME_PAIRS]
_TO_LAVIDA = [(_pattern(ours), lavida) for lavida, ours in _NAME_PAIRS]


def _convert(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(**match.groupdict())
    return None


def lavida_to_ours(key: str) -> str | None:
    return _convert(key, _TO_OURS)


def ours_to_lavida(key: str) -> str:
    """Inverse mapping (used to write checkpoints in LaViDa's layout, e.g. the tiny factory)."""
    name = _convert(key, _TO_LAVIDA)
    if name is None:
        raise KeyError(f"no LaViDa name for parameter {key!r}")
    return name


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: sharded (with an index) or one ``model.safetensors``."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({path / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path}: shards named in the index are missing: {missing}")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    if list(path.glob("*.bin")) or list(path.glob("*.pt")):
        raise CheckpointError(f"{path}: only pickle weights (*.bin/*.pt) found; shirg-eval loads safetensors only")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def read_lavida_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in checkpoint_files(path):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    state[key] = handle.get_tensor(key)
        except Exception as err:  # safetensors raises its own error types for truncated headers
            raise CheckpointError(f"{file}: cannot read safetensors ({err})") from err
    return state


def map_state_dict(lavida_state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LaViDa keys -> our keys, with every missing, unexpected and mis-shaped key named in one error."""
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in lavida_state.items():
        ours = lavida_to_ours(key)
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            mapped[ours] = tensor
    # post_layernorm is stored by LaViDa but never applied; our tower has it too, so it maps.
    missing = [ours_to_lavida(k) for k in expected if k not in mapped]
    wrong = [
        f"{ours_to_lavida(k)}: checkpoint {tuple(t.shape)} vs model {tuple(expected[k].shape)}"
        for k, t in mapped.items() if tuple(t.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {_preview(wrong)}")
    if problems:
        raise CheckpointError("checkpoint does not match the LaViDa layout for its config: " + "; ".join(problems))
    return mapped


def _preview(items: list[str], n: int = 8) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def resolve_checkpoint(path_or_id: str | Path, revision: str | None = None) -> Path:
    """A local directory as is; otherwise a hub id downloaded (config, safetensors, tokenizer) to the HF cache."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    looks_like_repo = re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None and not text.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise CheckpointNotFoundError(text, "no such directory (and not a hub id of the form owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            text, revision=revision,
            allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt"],
        ))
    except Exception as err:
        # One line: the hub's own message spans several (and names its internal exception chain).
        detail = " ".join(str(err).split())
        raise CheckpointNotFoundError(
            text, f"not a local directory, and the hub download failed ({type(err).__name__}: {detail[:300]})"
        ) from err


def default_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(dtype, str):
        names = {"auto": None, "float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(names)}")
        dtype = names[dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def load_lavida(path_or_id: str | Path, *, device=None, dtype=None, attn_implementation: str | None = None,
                revision: str | None = None):
    from .lavida import LavidaModel

    path = resolve_checkpoint(path_or_id, revision)
    device, dtype = default_device_dtype(device, dtype)
    if attn_implementation is None:
        attn_implementation = "sdpa"
    config = LavidaConfig.from_dir(path)
    # Parameters on the meta device (no random init of 8B weights); buffers such as RoPE's inv_freq are real.
    with init_empty_weights(include_buffers=False):
        model = LavidaModel(config, attn_implementation=attn_implementation)
    state = map_state_dict(read_lavida_state_dict(path), model)
    model.load_state_dict(state, strict=True, assign=True)
    model = cast_model(model, device, dtype)
    model.checkpoint_path = str(path)
    model.eval()
    return model


def cast_model(model, device: torch.device, dtype: torch.dtype):
    """Move/cast the model but keep RoPE frequencies in fp32 (LLaDA's ``rope_full_precision``)."""
    fp32_buffers = {name: buf.detach().clone().float() for name, buf in model.named_buffers() if name.endswith("inv_freq")}
    model = model.to(device=device, dtype=dtype)
    for name, value in fp32_buffers.items():
        module_name, _, buffer_name = name.rpartition(".")
        module = model.get_submodule(module_name)
        persistent = buffer_name not in module._non_persistent_buffers_set
        module.register_buffer(buffer_name, value.to(device), persistent=persistent)
    return model


def save_lavida(model, path: str | Path) -> None:
    """Write ``model`` as LaViDa writes it: config.json + model.safetensors with LaViDa's key names."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {ours_to_lavida(k): v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(model.config.raw, indent=2, sort_keys=True) + "\n")
    vision = model.config.vision
    spec = {k: getattr(vision, k) for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_channels",
                                            "image_size", "patch_size", "hidden_act", "layer_norm_eps")}
    spec["num_hidden_layers"] = vision.num_hidden_layers + 1  # stored as constructed, before LaViDa's drop
    (path / SIGLIP_CONFIG_FILENAME).write_text(json.dumps(spec, indent=2) + "\n")
