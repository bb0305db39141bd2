"""One writer per run folder: an OS-level lock that dies with its process.

``fcntl.flock`` on a file inside the folder: the kernel drops the lock when the holding process exits, however it
exits (kill -9 included), so a crashed run never leaves a stuck lock behind; the file itself stays and only records
who held it last. (``filelock`` is not used: lmms-eval makes its locks per-process singletons, and a second lock
object in the same process would not conflict.) The holder writes its pid, host, start time and command into the
file so that a refused second writer can say who is writing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

# Locks this process holds: path -> [open handle, holders]. flock conflicts between two handles of one process too.
_HELD_HERE: dict[str, list[Any]] = {}


class RunLockedError(RuntimeError):
    """Another live process writes into this run folder."""


class RunLock:
    """Hold ``path`` (a lock file) exclusively while the run lives; ``release()`` or exiting the process frees it.

    ``what`` names the run in the refusal message (e.g. "training run in outputs/lora").
    """

    def __init__(self, path: str | Path, what: str, fix: str) -> None:
        self.path = Path(path)
        self.what, self.fix = what, fix
        self._handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming its holder. Within one process the lock is
        shared (counted): the process is the one writer, whichever of its objects writes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in _HELD_HERE:
            _HELD_HERE[key][1] += 1
            self._handle = _HELD_HERE[key][0]
            return self
        handle = open(self.path, "a+", encoding="utf-8")  # never truncates: the holder's record stays readable
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.close()
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(f"{self.what}: another process is writing there ({describe_holder(self.path)}). "
                                 f"{self.fix}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder_record()) + "\n")
        handle.flush()
        self._handle = handle
        _HELD_HERE[key] = [handle, 1]
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        key = str(self.path.resolve())
        held = _HELD_HERE.get(key)
        self._handle = None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD_HERE[key]
            fcntl.flock(held[0].fileno(), fcntl.LOCK_UN)
            held[0].close()

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}


def describe_holder(path: Path) -> str:
    """'pid 123 on host, started 2026-...' from the lock file (best effort: the holder may be mid-write)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8").strip() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record.get("pid"):
        return f"lock file {path}"
    return (f"pid {record['pid']} on {record.get('host', '?')}, started {record.get('started', '?')}: "
            f"{record.get('command', '')}").rstrip(": ")
