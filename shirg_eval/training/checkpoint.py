"""Atomic, resumable checkpoints: ``OUT/checkpoint-STEP/`` + ``OUT/latest``.

Layout of one checkpoint::

    checkpoint-STEP/
      adapter_config.json, adapter_model.safetensors, shirg_adapter.json   # the PEFT adapter (inference)
      trainer_state.json                                                   # step, micro-step, epoch, data index
      rng_state_rank{R}.safetensors                                        # python/numpy/torch RNG per rank
      ds/                                                                  # DeepSpeed: LoRA weights, optimizer
                                                                           # partitions, LR scheduler

Everything is written into ``checkpoint-STEP.tmp`` first; once every rank is done, rank 0 renames it to
``checkpoint-STEP`` and then replaces ``latest`` (a text file with the directory name) via rename. A crash at
any point leaves the previous ``latest`` and its directory untouched; stray ``.tmp`` dirs are ignored. The folder
protocol (:func:`publish_checkpoint`, :func:`latest_pointer`, :func:`rotate_checkpoints`) is shared with the
reference trainer (``shirg_eval/reference/train.py``), whose checkpoints hold a whole model instead.

Nothing here is unpickled: RNG states are tensors in safetensors with the Python/NumPy scalars as JSON in its
metadata, and DeepSpeed's own files under ``ds/`` (``torch.save`` pickles, which DeepSpeed reads with
``weights_only=False``) are read on resume through ``torch.load(weights_only=True)`` with an allow-list of the
plain DeepSpeed classes they hold. A checkpoint folder is something users share.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.adapters import ADAPTER_WEIGHTS, LATEST, SHIRG_META, TRAINER_STATE
from .adapters import adapter_state_dict, write_adapter
from .distributed import barrier

STATE_FILE = TRAINER_STATE
DS_TAG = "ds"
_CKPT_RE = re.compile(r"checkpoint-(\d+)\Z")


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


def latest_pointer(out_dir: str | Path) -> Path | None:
    """The checkpoint folder ``OUT/latest`` names (None without the file); whether it is complete is the caller's."""
    out = Path(out_dir)
    latest = out / LATEST
    return out / latest.read_text().strip() if latest.is_file() else None


def find_latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint: ``latest`` if it names a complete one, else the highest complete step."""
    out = Path(out_dir)
    target = latest_pointer(out)
    if target is not None and is_complete(target):
        return target
    steps = sorted(((int(m.group(1)), p) for p in out.glob("checkpoint-*")
                    if (m := _CKPT_RE.match(p.name)) and is_complete(p)), reverse=True)
    return steps[0][1] if steps else None


def rng_state_file(rank: int) -> str:
    return f"rng_state_rank{rank}.safetensors"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's Python, NumPy, torch (and CUDA) RNG states as (tensors, JSON metadata) for safetensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors = {"python": torch.tensor(py_state, dtype=torch.int64),
               "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
               "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    meta = {"format": "1", "python": json.dumps({"version": py_version, "gauss_next": py_gauss}),
            "numpy": json.dumps({"name": np_name, "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                                 "cached_gaussian": float(np_gauss)})}
    return tensors, meta


def save_rng_state(path: Path) -> None:
    from safetensors.torch import save_file

    tensors, meta = rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)


def load_rng_state(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    py, npy = json.loads(meta["python"]), json.loads(meta["numpy"])
    random.setstate((py["version"], tuple(int(v) for v in tensors["python"].tolist()), py["gauss_next"]))
    np.random.set_state((npy["name"], tensors["numpy_keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


def load_legacy_rng_state(path: Path) -> bool:
    """Checkpoints written before the safetensors format: ``weights_only`` load, NumPy arrays allow-listed."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's array rebuild function (numpy 1.x and 2.x paths differ)
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, weights_only=True)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except Exception as err:  # noqa: BLE001 -- an unreadable legacy RNG file costs reproducibility, not the run
        print(f"[shirg-train] {path}: RNG state not restored ({type(err).__name__}: {err}); the resumed run "
              "continues with fresh RNG state", flush=True)
        return False
    return True


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
    barrier()
    # DeepSpeed writes the optimizer partitions of every rank; frozen base weights are left out.
    engine.save_checkpoint(str(tmp), tag=DS_TAG, client_state={"step": step}, save_latest=False,
                           exclude_frozen_parameters=True)
    save_rng_state(tmp / rng_state_file(rank))
    state = adapter_state_dict(peft_model)  # gathers under ZeRO-3 (collective)
    if rank == 0:
        write_adapter(peft_model, state, tmp, meta)
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")
    barrier()
    if rank == 0:
        publish_checkpoint(tmp, final)
    barrier()
    return final


def publish_checkpoint(tmp: Path, final: Path) -> None:
    """Rename the fully written ``tmp`` folder to ``final`` and point ``latest`` (beside it) at it."""
    _fsync_dir(tmp)
    if final.exists():  # the same step saved before (e.g. re-run): move the old copy aside, then drop it
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    out = final.parent
    pointer = out / f"{LATEST}.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, out / LATEST)  # atomic: readers see the old or the new name, never half
    _fsync_dir(out)


def rotate_checkpoints(out_dir: str | Path, keep: int, pattern: str = "checkpoint-*") -> None:
    """Delete all but the ``keep`` last checkpoint folders in name order (names that sort by age: padded steps)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for old in sorted(p for p in Path(out_dir).glob(pattern) if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _deepspeed_allowed_globals() -> list[Any]:
    """The non-tensor objects in DeepSpeed's optimizer files (ZeRO 0-3, fp32/bf16): plain data, no code."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_deepspeed_loads(engine: Any) -> Iterator[None]:
    """Route this engine's checkpoint reads through ``torch.load(weights_only=True)`` (DeepSpeed's own engine
    passes ``weights_only=False``, i.e. full pickle); anything outside the allow-list is refused, not run."""
    ckpt_engine = engine.checkpoint_engine
    allowed = _deepspeed_allowed_globals()

    def load(path, map_location=None):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r"GLOBAL (\S+)", str(err))
            what = f"global {found.group(1)}" if found else str(err).splitlines()[0][:200]
            raise RuntimeError(
                f"resume: {path} holds objects outside the weights-only allow-list ({what}); it was not loaded, "
                "since unpickling a shared file can run code. Resume from a checkpoint this trainer wrote") from None

    ckpt_engine.load = load  # instance attribute: shadows the class's pickle-based load for this engine only
    try:
        yield
    finally:
        del ckpt_engine.load


def load_checkpoint(engine, ckpt: Path, rank: int) -> dict[str, Any]:
    """Restore DeepSpeed (LoRA weights, optimizer, scheduler) and this rank's RNG; return the trainer state."""
    if not is_complete(ckpt):
        raise FileNotFoundError(f"checkpoint {ckpt} is incomplete or missing")
    with weights_only_deepspeed_loads(engine):
        path, _ = engine.load_checkpoint(str(ckpt), tag=DS_TAG, load_module_strict=False,
                                         load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the optimizer state from {ckpt / DS_TAG}")
    if (ckpt / rng_state_file(rank)).is_file():
        load_rng_state(ckpt / rng_state_file(rank))
    elif (ckpt / f"rng_state_rank{rank}.pt").is_file():
        load_legacy_rng_state(ckpt / f"rng_state_rank{rank}.pt")
    return json.loads((ckpt / STATE_FILE).read_text())
