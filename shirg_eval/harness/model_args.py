"""``--model_args`` for the shirg-eval lmms-eval models: declared once, typed, validated.

lmms-eval coerces ``key=value`` strings ("true" -> bool, digits -> int, else float, else str); every argument
here is checked against its declared type so a typo or a wrong type stops the run with a clear message
instead of being silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..model.kv_cache import KV_DTYPES
from ..model.loading import DEFAULT_PRETRAINED
from ..records import INFRASTRUCTURE, RESOLVED


@dataclass
class ModelArgs:
    """Fields marked ``INFRASTRUCTURE`` say where/how a run executed and are no part of its identity (one
    leaderboard row); ``RESOLVED`` ones enter it as what actually ran (the weights' digest, the dtype used);
    every other field is a setting of the computation (:mod:`shirg_eval.harness.identity`)."""

    pretrained: str = field(default=DEFAULT_PRETRAINED, metadata=RESOLVED)
    lora: str | None = field(default=None, metadata=RESOLVED)
    # load a LoRA trained on other base weights (recorded in run_meta.lora); the base itself is in the identity
    allow_base_mismatch: bool = field(default=False, metadata=INFRASTRUCTURE)
    k: int | None = None
    scaffold: bool | None = None
    alpha: float | None = None
    coverage: bool | None = None
    merge: str | None = None  # shirg_original: one_hop (default) | kept_components | none
    selector: str | None = None
    resolution: int | None = None
    anyres: bool | None = None  # reducers: LaViDa's anyres views (unpooled) instead of one square view
    lm_layers: int | None = None  # fastv: LM layers that see every visual token before the ranking
    gen_length: int | None = None  # default: the task's max_new_tokens (ChartQA 16, DocVQA 32)
    steps: int | None = None  # default: gen_length (LaViDa)
    block_length: int | None = None  # default: min(128, gen_length)
    prefix_cache: bool = True
    kv_dtype: str = "auto"
    decoding: str = "fixed"  # fixed (LaViDa's steps) | threshold (Fast-dLLM's confidence-threshold decoding)
    threshold: float = 0.9  # decoding=threshold: commit every masked position whose confidence exceeds it
    compile: bool = False  # torch.compile the cached denoising step (static shapes, prefix-length buckets)
    compile_bucket: int = 128  # compile=true: prefix lengths padded up to a multiple of this
    device: str | None = field(default=None, metadata=INFRASTRUCTURE)
    dtype: str | None = field(default=None, metadata=RESOLVED)
    seed: int = 0
    attn_implementation: str | None = field(default=None, metadata=RESOLVED)
    # score the rest and count failed samples instead of failing the run
    allow_failures: bool = field(default=False, metadata=INFRASTRUCTURE)
    # selection overlays saved for the first N samples (beside the results)
    pictures: int = field(default=3, metadata=INFRASTRUCTURE)
    # directory of the resume journal (the lmms_eval command sets one per output_path)
    journal: str | None = field(default=None, metadata=INFRASTRUCTURE)
    batch_size: int = 1  # not a model_arg: lmms-eval's --batch_size, parsed by parse_batch_size

    def selector_params(self) -> dict[str, Any]:
        names = ("k", "scaffold", "alpha", "coverage", "merge", "lm_layers")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def variant_params(self) -> dict[str, Any]:
        """What :class:`~shirg_eval.pipeline.ShirgPipeline` / ``VisualPath`` take besides the variant: the
        selector parameters, plus ``selector``, ``resolution`` and ``anyres`` when given."""
        params = self.selector_params()
        if self.selector:
            params["selector"] = self.selector
        if self.resolution:
            params["resolution"] = self.resolution
        if self.anyres:
            params["anyres"] = True
        return params


# lmms-eval passes these to every model; they are handled (or rejected) explicitly.
_CLI_INJECTED = {"batch_size", "max_batch_size"}
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _expected_type(annotation: str) -> str:
    for name in ("bool", "int", "float", "str"):
        if annotation.startswith(name):
            return name
    raise AssertionError(annotation)


def parse_batch_size(variant: str, value: Any) -> int:
    """lmms-eval's ``--batch_size`` (a string: ``N``, ``auto`` or ``auto:N``) as the number of documents decoded
    together. ``auto*`` is refused: a decode's memory depends on prompt length, visual tokens and gen_length, so
    no probe on one document sizes a batch safely for a task."""
    if value is None:
        return 1
    text = str(value).strip()
    if text.startswith("auto"):
        raise ValueError(f"--model {variant}: --batch_size {text} (automatic sizing) is not supported; pass an "
                         f"explicit --batch_size N (documents decoded together, e.g. 8)")
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"--model {variant}: --batch_size must be a whole number >= 1, got {value!r}")
    return int(text)


def parse_model_args(variant: str, raw: dict[str, Any]) -> ModelArgs:
    valid = {f.name: f for f in fields(ModelArgs) if f.name != "batch_size"}
    unknown = sorted(set(raw) - set(valid) - _CLI_INJECTED)
    if unknown:
        raise ValueError(
            f"--model {variant}: unknown model_args {unknown}; valid: {', '.join(valid)}"
        )
    values: dict[str, Any] = {"batch_size": parse_batch_size(variant, raw.get("batch_size", 1))}
    for name, value in raw.items():
        if name in _CLI_INJECTED or value is None:
            continue
        kind = _expected_type(str(valid[name].type))
        if kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. device=0 or a numeric path component
        if kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)  # lmms-eval parses "-5" as a float (str.isnumeric() is False for a sign)
        ok = isinstance(value, _TYPES[kind]) and not (kind in ("int", "float") and isinstance(value, bool))
        if not ok:
            raise ValueError(
                f"--model {variant}: model_args {name}={value!r} should be {kind}, got {type(value).__name__}"
            )
        values[name] = float(value) if kind == "float" else value
    args = ModelArgs(**values)
    if args.kv_dtype not in KV_DTYPES:
        raise ValueError(f"--model {variant}: kv_dtype={args.kv_dtype!r} is not one of {KV_DTYPES}")
    for name in ("k", "gen_length", "steps", "block_length", "resolution", "lm_layers", "compile_bucket"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--model {variant}: model_args {name} must be >= 1, got {value}")
    if args.decoding not in ("fixed", "threshold"):
        raise ValueError(f"--model {variant}: decoding={args.decoding!r} is not one of ('fixed', 'threshold')")
    if args.compile and not args.prefix_cache:
        raise ValueError(f"--model {variant}: compile=true compiles the prefix-cached step; drop prefix_cache=false")
    if not args.threshold > 0:
        raise ValueError(f"--model {variant}: threshold must be > 0 (> 1 commits one token per step), "
                         f"got {args.threshold}")
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--model {variant}: alpha must be in [0, 1], got {args.alpha}")
    if args.device is not None:
        check_device(args.device, f"--model {variant}: model_args device={args.device}")
    return args


def check_device(device: str, where: str) -> None:
    """A CUDA device on a torch without CUDA (or without a visible GPU) is named with the fix, not asserted on."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{where}: not a torch device ({err}); use cpu, cuda or cuda:N") from None
    if kind != "cuda" or torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        raise ValueError(f"{where}: this torch ({torch.__version__}) is built without CUDA. Use device=cpu, or "
                         "install the CUDA build on a GPU machine (`make setup GPU=1`)")
    raise ValueError(f"{where}: torch {torch.__version__} has CUDA but sees no GPU (CUDA_VISIBLE_DEVICES="
                     f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}). Use device=cpu, or run on a machine "
                     "with a visible GPU")
