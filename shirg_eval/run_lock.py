"""One writer per run folder: an OS-level lock that dies with its process.

``fcntl.flock`` on a file inside the folder: the kernel drops the lock when the last process holding its open file
description exits, however it exits (kill -9 included), so a crashed run never leaves a stuck lock behind; the file
itself stays and only records who held it last. The lock is not ``filelock``'s: what must conflict here are two
processes, and the kernel's lock is what a killed process cannot leave behind. The holder writes its pid, host,
start time and program into the file so that a refused second writer can say who is writing.

A child started with the lock's descriptor (``pass_fds=(lock.fileno(),)``) keeps the folder locked until it exits
too, even if its parent is killed first.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Locks this process holds: resolved path -> [fd, holders]. flock conflicts between two descriptors of one process
# too, so a second RunLock on a path this process already holds shares the first one's descriptor.
_HELD_HERE: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


class RunLockedError(RuntimeError):
    """Another live process writes into this run folder."""


class RunLock:
    """Hold ``path`` (a lock file) exclusively while the run lives; ``release()`` or exiting the process frees it.

    ``what`` names the run in the refusal message (e.g. "output_dir outputs/lora"), ``fix`` says what to do.
    """

    def __init__(self, path: str | Path, what: str, fix: str) -> None:
        self.path = Path(path)
        self.what, self.fix = what, fix
        self._key: str | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming its holder. Within one process the lock is
        shared (counted): the process is the one writer, whichever of its objects writes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.parent.resolve() / self.path.name)
        with _HELD_GUARD:
            if key in _HELD_HERE:
                _HELD_HERE[key][1] += 1
                self._key = key
                return self
            fd = _open_regular(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLockedError(f"{self.what}: another process is writing there ({describe_holder(self.path)})"
                                     f". {self.fix}") from None
            # Only the holder rewrites the record; a refused process never touches the file's content.
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder_record()) + "\n").encode(), 0)
            _HELD_HERE[key] = [fd, 1]
            self._key = key
        return self

    def fileno(self) -> int:
        """The locked descriptor, for ``subprocess.Popen(pass_fds=...)``."""
        if self._key is None:
            raise RuntimeError(f"{self.path} is not held")
        return _HELD_HERE[self._key][0]

    def release(self) -> None:
        with _HELD_GUARD:
            key, self._key = self._key, None
            held = _HELD_HERE.get(key) if key is not None else None
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del _HELD_HERE[key]
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])

    @property
    def held(self) -> bool:
        return self._key is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _open_regular(path: Path) -> int:
    """Open (or create) the lock file without following a symlink, and only if it is a regular file: a link planted
    in a shared folder must not make the holder overwrite the file it points to."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunLockedError(f"{path} is a symlink, not a lock file: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunLockedError(f"{path} is not a regular file: remove it")
    return fd


def holder_record() -> dict[str, Any]:
    # The program only, not its arguments (they may hold tokens, and lock files sit in shared result folders).
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "program": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"}


def describe_holder(path: Path) -> str:
    """'pid 123 on host, started 2026-..., program' from the lock file (best effort: the holder may be mid-write)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8").strip() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or not record.get("pid"):
        return f"lock file {path}"
    return (f"pid {record['pid']} on {record.get('host', '?')}, started {record.get('started', '?')}, "
            f"{record.get('program', '?')}")
