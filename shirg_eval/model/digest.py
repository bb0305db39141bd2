"""Identity of a base checkpoint's weights: one sha256 over its safetensors files, cheap after the first time.

The digest is ``sha256`` of the sorted ``(file name, file sha256)`` pairs of the checkpoint's safetensors files
(:func:`~shirg_eval.model.loading.checkpoint_files`): two folders holding the same weight files get the same
digest wherever they live, and a single changed byte changes it.

* **Hub snapshots** (``.../models--owner--name/snapshots/<revision>/``): each file is a link to a blob named by
  the hub's sha256 of its content (the LFS object id), so nothing is read; the revision sha is reported beside.
* **Local folders**: each file is hashed once and the result cached, keyed by (size, mtime), in
  ``<checkpoint>/.shirg_weights_sha256.json``, or under the user cache dir when the checkpoint is read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

CACHE_NAME = ".shirg_weights_sha256.json"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_REVISION = re.compile(r"[0-9a-f]{40}\Z")


@dataclass(frozen=True)
class WeightsIdentity:
    sha256: str  # digest over the safetensors files (see the module docstring)
    revision: str | None  # hub commit sha when the checkpoint is a hub snapshot, else None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shirg_eval" / "weights_sha256"


def hub_revision(checkpoint: Path) -> str | None:
    """The commit sha of a hub snapshot folder (``.../snapshots/<sha>``), else None."""
    if checkpoint.parent.name == "snapshots" and _REVISION.match(checkpoint.name):
        return checkpoint.name
    return None


def _hub_blob_sha256(file: Path) -> str | None:
    """A hub snapshot file links to ``blobs/<sha256 of its content>`` (LFS files): read the name, not the bytes."""
    if not file.is_symlink():
        return None
    name = file.resolve().name
    return name if _SHA256.match(name) else None


def _cache_paths(checkpoint: Path) -> list[Path]:
    key = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:24]
    in_user_cache = user_cache_dir() / f"{key}.json"
    # Never write into the hub's snapshot folders (huggingface_hub owns them).
    return [in_user_cache] if hub_revision(checkpoint) else [checkpoint / CACHE_NAME, in_user_cache]


def _read_cache(paths: list[Path]) -> dict[str, dict]:
    for path in paths:
        try:
            files = json.loads(path.read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(files, dict):
            return files
    return {}


def _write_cache(paths: list[Path], files: dict[str, dict]) -> None:
    """Beside the checkpoint if writable, else in the user cache dir; a cache that cannot be written is skipped."""
    text = json.dumps({"format": 1, "files": files}, indent=1, sort_keys=True) + "\n"
    for path in paths:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
            return
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def weights_identity(checkpoint: str | Path) -> WeightsIdentity:
    """The digest of ``checkpoint``'s weight files (hub blob names, cached hashes or hashed now)."""
    from .loading import checkpoint_files

    checkpoint = Path(checkpoint)
    cache_paths = _cache_paths(checkpoint)
    cached = _read_cache(cache_paths)
    entries: dict[str, str] = {}
    fresh: dict[str, dict] = {}
    for file in checkpoint_files(checkpoint):
        name = file.relative_to(checkpoint).as_posix()
        blob = _hub_blob_sha256(file)
        if blob is not None:
            entries[name] = blob
            continue
        stat = file.stat()
        hit = cached.get(name)
        if isinstance(hit, dict) and hit.get("size") == stat.st_size and hit.get("mtime_ns") == stat.st_mtime_ns:
            entries[name] = str(hit["sha256"])
        else:
            entries[name] = sha256_file(file)
        fresh[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": entries[name]}
    if fresh and fresh != {k: cached.get(k) for k in fresh}:
        _write_cache(cache_paths, fresh)
    digest = hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()
    return WeightsIdentity(digest, hub_revision(checkpoint))


def weights_sha256(checkpoint: str | Path) -> str:
    return weights_identity(checkpoint).sha256
