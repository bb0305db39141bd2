"""What a training run leaves in its output folder besides checkpoints: the guard against mixing two runs in one
folder, and ``metrics.jsonl`` (a start record per launch, one line per logged step, an end record).

A folder that holds a run (checkpoints, ``latest``, or logged steps) is never trained into from step 1 silently:
``--resume`` continues it, ``--overwrite`` deletes that run first; without either the trainer refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..model.adapters import LATEST, SHIRG_META, AdapterError, base_mismatch, describe_mismatch
from .config import TrainConfig

METRICS_FILE = "metrics.jsonl"
WRITER_LOCK = ".writer.lock"  # held (flock) by the launch that writes the folder: one writer per run
_CHECKPOINT_DIR = re.compile(r"checkpoint-\d+(\.tmp|\.old)?\Z")
# Keys that change how a launch behaves, not what it trains: left out of the config hash.
_NOT_HASHED = ("resume", "overwrite", "progress")


class OutputDirError(RuntimeError):
    """The output folder already holds a training run, and neither --resume nor --overwrite was given."""


def config_hash(cfg: TrainConfig) -> str:
    """sha256 of the training configuration (canonical JSON), without the launch-only keys."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _logged_steps(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    n = 0
    for line in metrics.read_text().splitlines():
        try:
            n += "step" in json.loads(line)
        except (json.JSONDecodeError, TypeError):
            continue  # a line cut by a kill
    return n


def prior_run(out: Path) -> list[str]:
    """What in ``out`` belongs to an earlier run: checkpoint folders, ``latest``, a metrics log with steps."""
    if not out.is_dir():
        return []
    found = sorted(p.name for p in out.iterdir() if p.is_dir() and _CHECKPOINT_DIR.match(p.name))
    if (out / LATEST).exists():
        found.append(LATEST)
    steps = _logged_steps(out / METRICS_FILE)
    if steps:
        found.append(f"{METRICS_FILE} ({steps} logged steps)")
    return found


def prepare_output_dir(cfg: TrainConfig, out: Path, rank: int) -> list[str]:
    """Refuse to start a fresh run over an earlier one; with ``overwrite``, delete it (rank 0). Returns what was
    deleted. Every rank calls it (before any collective), so all of them refuse together."""
    if cfg.resumes():
        return []
    found = prior_run(out)
    if not found:
        return []
    if not cfg.overwrite:
        shown = ", ".join(found[:6]) + (f", ... (+{len(found) - 6} more)" if len(found) > 6 else "")
        raise OutputDirError(
            f"output_dir {out} already holds a training run ({shown}). Continue it with --resume, start over with "
            f"--overwrite (deletes its checkpoints and {METRICS_FILE}), or choose another --output_dir")
    if (out / "tensorboard").is_dir():
        found.append("tensorboard")  # its event files would mix the two runs' curves
    if rank == 0:
        for name in found:
            target = out / name.split(" ")[0]
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    return found


def start_record(cfg: TrainConfig, *, resumed_from: str | None, start_step: int, world_size: int,
                 base: dict[str, Any], overwrote: list[str]) -> dict[str, Any]:
    """The first line a launch writes into metrics.jsonl: when, which configuration, from where."""
    return {"event": "start", "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config_sha256": config_hash(cfg), "resumed_from": resumed_from, "start_step": start_step,
            "world_size": world_size, "pretrained": cfg.pretrained, "variant": cfg.variant,
            "base_weights_sha256": base.get("base_weights_sha256"), "base_revision": base.get("base_revision"),
            "allow_base_mismatch": cfg.allow_base_mismatch, "base_mismatch": base.get("mismatch"),
            "overwrote": overwrote}


def check_resume_base(ckpt: Path, base_path: str | Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """A checkpoint resumes only onto the base weights it was trained on, unless ``allow_base_mismatch``;
    returns the allowed mismatch (for the start record) or None."""
    meta = json.loads((ckpt / SHIRG_META).read_text())
    differs = base_mismatch(meta, base_path)
    if differs and not cfg.allow_base_mismatch:
        raise AdapterError(
            f"resume: {ckpt} was trained on base {meta.get('base_id')}, but --pretrained {cfg.pretrained} is another "
            f"model ({describe_mismatch(differs)}). Resume with the base it was trained on, or pass "
            f"--allow_base_mismatch true (recorded in {METRICS_FILE})")
    return differs


class MetricsLog:
    """JSONL metrics (rank 0). On resume, step lines past the resumed step are dropped so no step appears twice;
    start/end records of earlier launches stay (each launch's start record says where it resumed from)."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard_dir: Path | None):
        self.path = path
        if resume_step is not None and path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if "step" not in rec or rec["step"] <= resume_step:
                    kept.append(line)
            path.write_text("".join(k + "\n" for k in kept))
        self.fh = open(path, "a", buffering=1)
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("tensorboard: true needs the `tensorboard` package (pip install tensorboard)") from err
            self.tb = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        if self.tb is not None and "step" in record:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()
