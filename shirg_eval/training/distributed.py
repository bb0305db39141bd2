"""Process-group set-up for the trainer, with or without the DeepSpeed launcher, and the JIT-op hazards around it.

DeepSpeed's communication backend JIT-builds a shared-memory all-reduce op when it starts on a CPU
(``deepspeed_shm_comm``, ~30 s with g++). It serves only ``inference_all_reduce``, which training never calls, so
on the CPU it is skipped. Any torch JIT build (that op on another setup, or an op a GPU run compiles) guards its
folder with an empty ``lock`` file that the builder holds open and deletes when done; a build killed half-way leaves
the file, and the next launch waits on it forever without a word. :func:`check_stale_build_locks` finds such a file
(no live process has it open) and says what to delete before anything waits on it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist

SHM_OP = "deepspeed_shm_comm"


class StaleBuildLockError(RuntimeError):
    """A torch extension build was interrupted and left its lock file; the next build would wait forever."""


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


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------------------ JIT build locks
def extensions_root() -> Path:
    """Where torch JIT-builds extensions (``TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``)."""
    override = os.environ.get("TORCH_EXTENSIONS_DIR")
    if override:
        return Path(override)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def _open_files() -> set[str] | None:
    """Every path some live process has open (Linux /proc); None where that cannot be read."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    paths: set[str] = set()
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue  # exited meanwhile, or not ours to read
        for entry in entries:
            try:
                paths.add(os.readlink(entry))
            except OSError:
                continue
    return paths


def stale_build_locks(root: Path | None = None) -> list[Path]:
    """Lock files of torch extension builds that no live process holds open (interrupted builds).

    Torch's builder creates ``<root>/<build>/<op>/lock`` with O_EXCL and keeps it open until it deletes it, so a
    lock nobody holds is left over from a build that died. Where open files cannot be listed, nothing is reported.
    """
    root = root or extensions_root()
    if not root.is_dir():
        return []
    locks = [p for p in root.glob("*/*/lock") if p.is_file()] + [p for p in root.glob("*/lock") if p.is_file()]
    if not locks:
        return []
    held = _open_files()
    if held is None:
        return []
    return sorted(p for p in locks if str(p.resolve()) not in held and str(p) not in held)


def check_stale_build_locks(root: Path | None = None) -> None:
    stale = stale_build_locks(root)
    if stale:
        shown = " ".join(str(p) for p in stale)
        raise StaleBuildLockError(
            f"an interrupted torch extension build left {len(stale)} lock file(s) that no process holds: {shown}. "
            f"The next build would wait on them forever. Delete them (rm {shown}) and launch again; the op is "
            "then rebuilt from scratch")
