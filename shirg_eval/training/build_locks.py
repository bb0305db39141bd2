"""Interrupted torch extension builds, named before the next launch waits on them forever.

Torch guards a JIT build (a DeepSpeed op, say) with an empty ``<root>/<build>/<op>/lock`` file that it creates with
O_EXCL, keeps open while it compiles and deletes when done. A build killed half-way leaves the file, and every later
build of that op waits for it to disappear, silently. The file records no owner, so staleness is read from the
outside: no live process on this machine holds it open, and it is older than any build takes. A younger unheld lock
may be a build on another machine sharing the folder (a network home): it is reported as a warning only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

STALE_AFTER_S = 600.0  # longer than a DeepSpeed op build; younger unheld locks only warn


class StaleBuildLockError(RuntimeError):
    """A torch extension build was interrupted and left its lock file; the next build would wait forever."""


def extensions_root() -> Path:
    """Where torch JIT-builds extensions (``TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``)."""
    override = os.environ.get("TORCH_EXTENSIONS_DIR")
    if override:
        return Path(override)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def _open_files() -> set[str] | None:
    """Every path some live process of this machine has open (Linux /proc); None where that cannot be read."""
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


def unheld_build_locks(root: Path | None = None) -> list[tuple[Path, float]]:
    """(lock file, age in seconds) for every build lock that no live process of this machine holds open."""
    root = root or extensions_root()
    if not root.is_dir():
        return []
    locks = [p for pattern in ("*/lock", "*/*/lock") for p in root.glob(pattern) if p.is_file()]
    if not locks:
        return []
    held = _open_files()
    if held is None:
        return []
    now = time.time()
    out = []
    for lock in sorted(locks):
        if str(lock) in held or str(lock.resolve()) in held:
            continue
        try:
            out.append((lock, now - lock.stat().st_mtime))
        except OSError:
            continue  # the build finished and removed it meanwhile
    return out


def stale_build_locks(root: Path | None = None, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    return [lock for lock, age in unheld_build_locks(root) if age >= stale_after_s]


def check_stale_build_locks(root: Path | None = None, stale_after_s: float = STALE_AFTER_S) -> None:
    """Raise for unheld locks older than ``stale_after_s``; warn (stderr) for younger ones."""
    found = unheld_build_locks(root)
    stale = [lock for lock, age in found if age >= stale_after_s]
    young = [(lock, age) for lock, age in found if age < stale_after_s]
    for lock, age in young:
        print(f"[shirg-train] warning: torch build lock {lock} ({age:.0f} s old) is held by no process here: a build "
              f"on another machine, or one that was killed; if the launch waits, delete it", file=sys.stderr)
    if stale:
        shown = " ".join(str(p) for p in stale)
        raise StaleBuildLockError(
            f"an interrupted torch extension build left {len(stale)} lock file(s) that no process here holds: "
            f"{shown}. The next build would wait on them forever. Unless another machine is building into this "
            f"folder right now, delete them (rm {shown}) and launch again; the op is then rebuilt from scratch")
