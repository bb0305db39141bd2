"""Training configuration: one flat dataclass (plus a nested ``data`` block), YAML + command-line overrides.

Every key is overridable on the command line as ``--key value`` (``--data.json PATH`` for the nested block);
values are parsed as YAML scalars so ``--lr 1e-4`` is a float and ``--lora_lm true`` a bool. Unknown keys are
an error that lists the valid ones (a typo must never silently train with the default).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# SigLIP encoder layers 0-3 q/k/v and both projector linears; names as in LavidaModel (PEFT fullmatches the regex).
VISION_PROJECTOR_TARGETS = (r"vision_tower\.encoder\.layers\.[0-3]\.self_attn\.(q|k|v)_proj"
                            r"|mm_projector\.(0|2)")
LM_TARGETS = r"language_model\.model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A bad training configuration (unknown key, wrong type, missing file)."""


@dataclass
class DataConfig:
    json: str = ""  # LLaVA-format conversation JSON (e.g. blip_laion_cc_sbu_558k.json)
    image_folder: str = ""  # image paths in the JSON are relative to this folder
    max_answer_tokens: int = 128  # longer answers are truncated (captions are short)
    # Answers are `answer <|eot_id|>` then pad tokens, all scored (training/answers.py; defaults = LaViDa's collator)
    pad_token: str = "eos"  # eos: the tokenizer's <|endoftext|>, as LaViDa pads | eot: <|eot_id|>
    pad_to_batch: bool = True  # pad every row to the micro-batch's longest (prompt text + answer), as LaViDa
    extra_pad: int = 128  # then max(0, k) more pads per micro-batch, k ~ U{-N..N-1} (LaViDa: 128); 0: none
    # > 0: short answers are padded to at least N tokens first: the evaluation's gen_length (chartqa_* 16, docvqa_*
    # 32) trains the canvas the sampler fills. A record's own `shirg_gen_length` takes precedence.
    pad_answers_to: int = 0


@dataclass
class ProbeConfig:
    """The decoding-aware validation probe (training/probe.py): every `every` steps, on held-out conversations."""

    every: int = 0  # optimizer steps between probes; 0: no probe
    json: str = ""  # LLaVA-format conversations disjoint from data.json (checked: ids and images)
    image_folder: str = ""
    docs: int = 32  # the first N records
    gen_length: int = 32  # the masked canvas of a record without `shirg_gen_length`
    early_stop: int = 0  # > 0: stop when p(answer) has not improved for this many probes (0: never)


@dataclass
class TrainConfig:
    pretrained: str = "jacklishufan/lavida-llada-v1.0-instruct"
    variant: str = "shirg_fixed"
    mixed_resolution: bool = False  # per batch, sample lavida_384 or the (672 px) `variant` path
    output_dir: str = "outputs/lora"
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    # the objective (training/objective.py); the defaults are what LaViDa's released weights were trained with
    objective: str = "lavida"  # lavida: mean CE over masked tokens + complementary masks | llada_sft: 1/t, per length
    mask: str = "random"  # random: t ~ U(0, 1) | full: every answer token masked (the sampler's first step)
    # LoRA
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_lm: bool = False  # also put LoRA on the LM's q/k/v/o
    # optimisation
    lr: float = 7e-5
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_scheduler: str = "cosine"  # cosine | linear | constant (all with linear warm-up)
    warmup_ratio: float = 0.1
    micro_batch_size: int = 16
    grad_accum: int = 8
    epochs: int = 2
    max_steps: int = -1  # > 0 caps the number of optimizer steps
    max_grad_norm: float = 1.0
    mask_eps: float = 1e-3  # masking probability (1 - eps) t + eps (mask: random)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    gradient_checkpointing: bool = False
    # bookkeeping
    deepspeed: str = "configs/deepspeed/zero2.json"
    save_steps: int = 500
    logging_steps: int = 1
    seed: int = 42
    resume: str = "no"  # no | auto (latest complete checkpoint in output_dir) | path to a checkpoint dir
    overwrite: bool = False  # start over in an output_dir that holds a run (deletes its checkpoints and metrics)
    allow_base_mismatch: bool = False  # resume a checkpoint made on other base weights (recorded in metrics.jsonl)
    tensorboard: bool = False
    num_workers: int = 0  # DataLoader workers for image decoding
    progress: bool = True  # tqdm bar on rank 0

    # ------------------------------------------------------------------ helpers
    @classmethod
    def valid_keys(cls) -> list[str]:
        keys = []
        for f in dataclasses.fields(cls):
            if f.name in BLOCKS:
                keys += [f"{f.name}.{d.name}" for d in dataclasses.fields(BLOCKS[f.name])]
            else:
                keys.append(f.name)
        return keys

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_dtype(self):
        import torch

        if self.precision == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}
        if self.precision not in names:
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        return names[self.precision]

    def resumes(self) -> bool:
        return self.resume not in ("", "no", "false", "False")

    def lora_targets(self) -> str:
        return VISION_PROJECTOR_TARGETS + (f"|{LM_TARGETS}" if self.lora_lm else "")

    def validate(self) -> None:
        from ..visual.variants import VARIANTS

        if self.variant not in VARIANTS:
            raise ConfigError(f"variant {self.variant!r} is unknown; known: {', '.join(VARIANTS)}")
        selector = VARIANTS[self.variant].selector
        if selector is not None:
            from ..selection.registry import get_selector

            if get_selector(selector).needs.lm_layers:
                raise ConfigError(f"variant {self.variant!r} selects inside the LM prefill, which training does not "
                                  "run (it would train on every visual token); train a vision-side variant")
        for name in ("micro_batch_size", "grad_accum", "epochs", "lora_r", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lora_alpha"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "num_workers", "max_grad_norm"):  # max_grad_norm 0: DeepSpeed does not clip
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.mask_eps < 1:
            raise ConfigError(f"mask_eps must be in (0, 1), got {self.mask_eps}")
        if len(self.adam_betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.data.max_answer_tokens < 1:
            raise ConfigError(f"data.max_answer_tokens must be >= 1, got {self.data.max_answer_tokens}")
        if self.lr_scheduler not in ("cosine", "linear", "constant"):
            raise ConfigError(f"lr_scheduler must be cosine, linear or constant, got {self.lr_scheduler!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.data.pad_answers_to < 0:
            raise ConfigError(f"data.pad_answers_to must be >= 0 (0: no padding to a fixed length), got "
                              f"{self.data.pad_answers_to}")
        self._validate_objective()
        if not self.data.json:
            raise ConfigError("data.json is not set (path to a LLaVA-format conversation JSON)")
        if self.overwrite and self.resumes():
            raise ConfigError(f"--overwrite and --resume {self.resume} contradict each other: --resume continues "
                              "the run in output_dir, --overwrite deletes it; pass one")
        self.resolved_dtype()

    def _validate_objective(self) -> None:
        from .answers import PAD_TOKENS
        from .objective import MASKS, OBJECTIVES

        for key, value, allowed in (("objective", self.objective, OBJECTIVES), ("mask", self.mask, MASKS),
                                    ("data.pad_token", self.data.pad_token, PAD_TOKENS)):
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        if self.data.extra_pad < 0:
            raise ConfigError(f"data.extra_pad must be >= 0 (0: no random extra padding), got {self.data.extra_pad}")
        for name in ("every", "early_stop"):
            if getattr(self.probe, name) < 0:
                raise ConfigError(f"probe.{name} must be >= 0 (0: off), got {getattr(self.probe, name)}")
        for name in ("docs", "gen_length"):
            if getattr(self.probe, name) < 1:
                raise ConfigError(f"probe.{name} must be >= 1, got {getattr(self.probe, name)}")
        if self.probe.every and not self.probe.json:
            raise ConfigError("probe.every is set but probe.json is not (held-out conversations to probe on)")
        if self.probe.early_stop and not self.probe.every:
            raise ConfigError("probe.early_stop needs probe.every > 0 (early stopping reads the probe)")

    def check_paths(self) -> None:
        """The launch's input paths exist (the trainer calls it before anything heavy starts; the data file is
        read then too, by ``data.load_training_data``). Not part of :meth:`validate`, so that a configuration can
        be checked on a machine without its data."""
        if self.deepspeed and resolve_repo_path(self.deepspeed) is None:
            raise ConfigError(f"deepspeed config {self.deepspeed} does not exist (configs/deepspeed/ has zero2.json, "
                              "zero3.json)")
        pretrained = self.pretrained
        if pretrained.startswith((".", "/", "~")) and not Path(pretrained).expanduser().is_dir():
            from ..model.config import CheckpointNotFoundError

            raise CheckpointNotFoundError(pretrained, "no such directory", "--pretrained")
        if self.resumes() and self.resume != "auto" and not Path(self.resume).exists():
            raise ConfigError(f"resume {self.resume} does not exist (--resume alone continues output_dir's latest "
                              "checkpoint)")


def resolve_repo_path(path: str | Path) -> Path | None:
    """``path`` as given, else relative to the repository (configs/... from any working directory), else None."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    in_repo = REPO_ROOT / candidate
    if in_repo.is_file():
        return in_repo
    if candidate.parts[:1] == ("configs",):  # an installed package keeps configs/ as shirg_eval.configs
        import shirg_eval.configs

        packaged = Path(shirg_eval.configs.__file__).parent.joinpath(*candidate.parts[1:])
        return packaged if packaged.is_file() else None
    return None


BLOCKS = {"data": DataConfig, "probe": ProbeConfig}  # nested blocks: `data.json`, `probe.every`, ...


def _set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    valid = TrainConfig.valid_keys()
    if key not in valid and not (key in BLOCKS and isinstance(value, dict)):
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
    block = key.split(".", 1)[0]
    if key in BLOCKS:
        for sub, v in value.items():
            _set_key(raw, f"{key}.{sub}", v)
    elif block in BLOCKS:
        raw.setdefault(block, {})[key.split(".", 1)[1]] = value
    else:
        raw[key] = value


def _coerce(cfg: TrainConfig) -> TrainConfig:
    """Check value types against the dataclass defaults (ints accepted where floats are expected)."""
    def check(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(default):
                check(value, f"{prefix}{f.name}.")
                continue
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{prefix}{f.name} must be true/false, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
                    try:
                        value = float(value)
                    except ValueError:
                        pass
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{prefix}{f.name} must be a number, got {value!r}")
                setattr(obj, f.name, float(value))
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{prefix}{f.name} must be an integer, got {value!r}")
            elif isinstance(default, str):
                if value is None:
                    setattr(obj, f.name, "")
                elif not isinstance(value, str):
                    setattr(obj, f.name, str(value))
    check(cfg, "")
    return cfg


def build_config(raw: dict[str, Any]) -> TrainConfig:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        _set_key(flat, key, value)
    blocks = {name: kind(**flat.pop(name, {})) for name, kind in BLOCKS.items()}
    return _coerce(TrainConfig(**blocks, **flat))


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` pairs -> dict; a bare ``--flag`` means true (e.g. ``--resume``)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_") if key.split(".", 1)[0] not in BLOCKS else key
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        parsed = yaml.safe_load(value) if value != "" else ""
        if isinstance(parsed, str):
            try:
                parsed = float(parsed) if any(c in parsed.lower() for c in ".e") else parsed
            except ValueError:
                pass
        if key == "resume" and parsed is True:
            parsed = "auto"
        if key == "resume" and parsed is False:
            parsed = "no"
        out[key] = parsed
        i += 1
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    merged: dict[str, Any] = {}
    for key, value in raw.items():
        _set_key(merged, key, value)
    for key, value in (overrides or {}).items():
        _set_key(merged, key, value)
    cfg = build_config(merged)
    cfg.validate()
    return cfg


def fill_deepspeed_config(ds: dict[str, Any], cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """Replace DeepSpeed's ``"auto"`` values with the YAML's (DeepSpeed itself rejects "auto")."""
    import torch

    bf16 = cfg.resolved_dtype() == torch.bfloat16
    values = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "betas": list(cfg.adam_betas),
    }

    def fill(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            node = dict(node)
            if key in ("bf16", "fp16") and node.get("enabled") == "auto":
                node["enabled"] = bf16 if key == "bf16" else False  # fp16 never: LLaDA is trained in bf16
            return {k: fill(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if node == "auto":
            if key not in values:
                raise ConfigError(f"DeepSpeed config: no value to fill \"auto\" for key {key!r}")
            return values[key]
        return node

    return fill(json.loads(json.dumps(ds)))
