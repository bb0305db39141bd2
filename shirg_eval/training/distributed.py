"""Process-group set-up for the trainer, with or without the DeepSpeed launcher.

DeepSpeed's communication backend JIT-builds a shared-memory all-reduce op when it starts on a CPU
(``deepspeed_shm_comm``, ~30 s with g++). It serves only ``inference_all_reduce``, which training never calls, so
on the CPU it is skipped: one JIT build less to wait for, or to leave half-done (see ``build_locks``).
"""

from __future__ import annotations

import os
import socket
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.distributed as dist
from torch import nn

SHM_OP = "deepspeed_shm_comm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank). Without a launcher, single-process defaults (else DeepSpeed probes MPI)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
    import deepspeed

    if not dist.is_initialized():
        if not torch.cuda.is_available():
            skip_cpu_shm_op()
        # CPU: gloo (no oneCCL here); GPU: NCCL.
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


def skip_cpu_shm_op() -> None:
    """Mark DeepSpeed's CPU shared-memory op unavailable, so its backend starts without JIT-building it.

    ``deepspeed.ops.__compatible_ops__`` is the dict ``build_shm_op`` consults (DeepSpeed caches it in the module
    so that edits persist); without the op, all-reduces go through torch.distributed (gloo), as they do anyway
    for everything but inference.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHM_OP] = False


def zero3_gathered(params: list[nn.Parameter]) -> AbstractContextManager:
    """Under ZeRO-3 parameters are partitioned (local tensors are empty): gather them for reading inside the block.
    Collective when they are partitioned; a no-op otherwise."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return nullcontext()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()
