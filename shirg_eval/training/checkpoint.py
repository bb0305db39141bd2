"""Atomic, resumable checkpoints: ``OUT/checkpoint-STEP/`` + ``OUT/latest``.

Layout of one checkpoint::

    checkpoint-STEP/
      adapter_config.json, adapter_model.safetensors, shirg_adapter.json   # the PEFT adapter (inference)
      trainer_state.json                                                   # step, micro-step, epoch, data index
      rng_state_rank{R}.pt                                                 # python/numpy/torch RNG per rank
      ds/                                                                  # DeepSpeed: LoRA weights, optimizer
                                                                           # partitions, LR scheduler

Everything is written into ``checkpoint-STEP.tmp`` first; once every rank is done, rank 0 renames it to
``checkpoint-STEP`` and then replaces ``latest`` (a text file with the directory name) via rename. A crash at
any point leaves the previous ``latest`` and its directory untouched; stray ``.tmp`` dirs are ignored.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .adapters import ADAPTER_WEIGHTS, LATEST, SHIRG_META, adapter_state_dict, write_adapter

STATE_FILE = "trainer_state.json"
DS_TAG = "ds"
_CKPT_RE = re.compile(r"checkpoint-(\d+)\Z")


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_complete(ckpt: Path) -> bool:
    return ckpt.is_dir() and not ckpt.name.endswith(".tmp") and all(
        (ckpt / name).is_file() for name in (STATE_FILE, ADAPTER_WEIGHTS, SHIRG_META))


def find_latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint: ``latest`` if it names a complete one, else the highest complete step."""
    out = Path(out_dir)
    latest = out / LATEST
    if latest.is_file():
        target = out / latest.read_text().strip()
        if is_complete(target):
            return target
    steps = sorted(((int(m.group(1)), p) for p in out.glob("checkpoint-*")
                    if (m := _CKPT_RE.match(p.name)) and is_complete(p)), reverse=True)
    return steps[0][1] if steps else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(engine, peft_model, out_dir: str | Path, step: int, trainer_state: dict[str, Any],
                    meta: dict[str, Any], rank: int) -> Path:
    """Collective: every rank must call it. Returns the final checkpoint dir."""
    out = Path(out_dir)
    final = out / f"checkpoint-{step}"
    tmp = out / f"checkpoint-{step}.tmp"
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)  # leftover of a crashed save of this same step
        tmp.mkdir(parents=True)
    _barrier()
    # DeepSpeed writes the optimizer partitions of every rank; frozen base weights are left out.
    engine.save_checkpoint(str(tmp), tag=DS_TAG, client_state={"step": step}, save_latest=False,
                           exclude_frozen_parameters=True)
    torch.save(rng_state(), tmp / f"rng_state_rank{rank}.pt")
    state = adapter_state_dict(peft_model)  # gathers under ZeRO-3 (collective)
    if rank == 0:
        write_adapter(peft_model, state, tmp, meta)
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")
    _barrier()
    if rank == 0:
        _fsync_dir(tmp)
        if final.exists():  # the same step saved before (e.g. re-run): move the old copy aside, then drop it
            old = out / f"checkpoint-{step}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        pointer = out / f"{LATEST}.tmp"
        pointer.write_text(final.name + "\n")
        os.replace(pointer, out / LATEST)  # atomic: readers see the old or the new name, never half
        _fsync_dir(out)
    _barrier()
    return final


def load_checkpoint(engine, ckpt: Path, rank: int) -> dict[str, Any]:
    """Restore DeepSpeed (LoRA weights, optimizer, scheduler) and this rank's RNG; return the trainer state."""
    if not is_complete(ckpt):
        raise FileNotFoundError(f"checkpoint {ckpt} is incomplete or missing")
    path, _ = engine.load_checkpoint(str(ckpt), tag=DS_TAG, load_module_strict=False, load_optimizer_states=True,
                                     load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the optimizer state from {ckpt / DS_TAG}")
    rng_file = ckpt / f"rng_state_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))  # our own file: plain Python/numpy objects
    return json.loads((ckpt / STATE_FILE).read_text())
