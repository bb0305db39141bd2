"""Typed records passed between the stages: what a run computed (its identity), what ran (its meta), and what
each answer cost (its efficiency record). The core writes them as JSON beside every result; the report reads them
back. Base layer: imports nothing of shirg_eval.

A record's JSON is its fields (``dataclasses.asdict``); ``from_json`` takes exactly those keys, so a renamed or
missing key fails loudly instead of silently changing a leaderboard.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

# Field metadata on ``harness.model_args.ModelArgs`` (read with ``dataclasses.fields``): how a model argument
# enters a run's identity. Unmarked fields are settings of the computation.
IDENTITY_ROLE = "identity_role"
INFRASTRUCTURE = {IDENTITY_ROLE: "infrastructure"}  # where/how the run executed (device, output folders): no part
RESOLVED = {IDENTITY_ROLE: "resolved"}  # recorded as what actually ran (the weights' digest, the dtype used)


def identity_role(metadata: Any) -> str | None:
    """``"infrastructure"``, ``"resolved"`` or None (a setting) for a ModelArgs field's metadata."""
    return metadata.get(IDENTITY_ROLE)


def _strict(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(data) - names), sorted(required - set(data))
    if unknown or missing:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}, missing keys {missing}")
    return data


@dataclass(frozen=True)
class RunIdentity:
    """What a run computed: two runs with equal identities are the same computation (one leaderboard row).

    ``settings`` holds every model argument that changes the computation, with each default filled in (the
    ``ModelArgs`` default, then the variant preset's and the selector's) and arguments that do not apply dropped
    (``threshold`` under fixed decoding, ``compile_bucket`` without compilation).
    """

    variant: str
    settings: dict[str, Any]  # normalised non-infrastructure model arguments (sorted by name)
    pretrained: str  # the base checkpoint as named (hub id or folder)
    base_sha256: str | None  # digest of the base weights (model/digest.py); None for runs from before digests
    lora: str | None  # the LoRA as named
    lora_sha256: str | None
    dtype: str | None  # the weights' dtype actually used
    attn_implementation: str | None

    @property
    def kv_dtype(self) -> str:
        return str(self.settings.get("kv_dtype", "auto"))

    @property
    def decoding(self) -> dict[str, Any]:
        names = ("decoding", "threshold", "gen_length", "steps", "block_length", "prefix_cache")
        return {n: self.settings[n] for n in names if n in self.settings}

    @property
    def compile(self) -> bool:
        return bool(self.settings.get("compile", False))

    @property
    def batch_size(self) -> int:
        return int(self.settings.get("batch_size", 1))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunIdentity:
        data = _strict(cls, dict(data))
        return cls(**{**data, "settings": dict(sorted(data["settings"].items()))})


@dataclass(frozen=True)
class LoraRecord:
    """A loaded LoRA as ``training.adapters.load_adapter`` reports it."""

    path: str
    sha256: str | None
    step: int | None = None
    variant: str | None = None
    rank: int | None = None
    base_id: Any = None
    base_weights_sha256: str | None = None
    base_mismatch: Any = None
    merged: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoraRecord:
        return cls(**_strict(cls, dict(data)))


@dataclass(frozen=True)
class RunMeta:
    """What actually ran, recorded beside every result row (``run_meta``): the pipeline's description
    (``ShirgPipeline.describe()``), the harness's decoding settings, and the run's identity."""

    variant: str
    resolution: int | None
    selector: str | None
    selector_params: dict[str, Any]
    view_mode: str
    pretrained: str
    checkpoint_path: str | None  # resolved: a hub id's snapshot folder names its revision
    config_sha256: str | None
    lora: LoraRecord | None
    seed: int
    device: str
    dtype: str
    attn_implementation: str | None
    versions: dict[str, str]
    prefix_cache: bool
    kv_dtype: str
    batch_size: int
    decoding: str
    latency_meaning: str
    compile: bool
    identity: RunIdentity
    anyres: bool = False
    threshold: float | None = None  # decoding=threshold only
    compile_bucket: int | None = None  # compile=true only

    def to_json(self) -> dict[str, Any]:
        """The ``run_meta`` dict; the conditional keys (anyres, threshold, compile_bucket) only when they apply."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["lora"] = asdict(self.lora) if self.lora else None
        out["identity"] = self.identity.to_json()
        for name, absent in (("anyres", False), ("threshold", None), ("compile_bucket", None)):
            if out[name] == absent:
                del out[name]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunMeta:
        data = _strict(cls, {k: v for k, v in data.items() if k not in _PER_SAMPLE_META})
        lora = LoraRecord.from_json(data["lora"]) if data.get("lora") else None
        return cls(**{**data, "lora": lora, "identity": RunIdentity.from_json(data["identity"])})


# Keys the harness adds to a sample's ``run_meta`` beside the run's own (EfficiencyRecord.meta): per sample.
_PER_SAMPLE_META = frozenset({"image_size", "prefix_kv_mb", "selection", "compile_stats", "compile_ms",
                              "selection_query", "request_ms", "preprocess_ms", "resumed"})


EFFICIENCY_FIELDS = ("latency_ms", "prefill_ms", "denoise_ms", "peak_mem_gb", "visual_tokens", "n_forward",
                     "batch_size", "amortized_latency_ms")


@dataclass
class EfficiencyRecord:
    """One answer's cost, passed from the lmms-eval model to the tasks' ``process_results``."""

    latency_ms: float | None
    prefill_ms: float | None
    denoise_ms: float | None
    peak_mem_gb: float | None
    peak_mem_kind: str | None  # "cuda_max_allocated" or "cpu_peak_rss" (process-wide, not per sample)
    visual_tokens: int | None
    n_forward: int | None = None  # LM forward passes of this answer: its prefill + the steps it took part in
    # In a batch, latency_ms is the batch's wall time (what each answer waited); amortized_latency_ms divides it
    # by the batch size (the throughput view). At batch 1 the two are equal.
    batch_size: int = 1
    amortized_latency_ms: float | None = None
    warmup: bool = False  # first sample of its task in this process: timings left out of aggregates
    meta: dict[str, Any] = field(default_factory=dict)  # RunMeta.to_json() plus the per-sample keys above
    error: str | None = None  # the sample failed (allow_failures=true): not scored, counted as failed

    @classmethod
    def failure(cls, error: str, meta: dict[str, Any]) -> EfficiencyRecord:
        return cls(None, None, None, None, None, None, meta=meta, error=error)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    to_json = as_dict

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EfficiencyRecord:
        return cls(**_strict(cls, dict(data)))
