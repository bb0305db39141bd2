"""Base-weights digest: content-addressed, cached beside the checkpoint (or in the user cache), free for hub snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from shirg_eval.model.digest import CACHE_NAME, weights_identity, weights_sha256


def _copy_weights(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(src / name, dst / name)
    return dst


def test_digest_follows_the_weight_bytes(tiny_checkpoint, tmp_path):
    copy = _copy_weights(tiny_checkpoint, tmp_path / "copy")
    assert weights_sha256(copy) == weights_sha256(tiny_checkpoint)  # where the files live does not matter
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one tensor
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert weights_sha256(copy) != weights_sha256(tiny_checkpoint)


def test_digest_is_cached_beside_the_checkpoint(tiny_checkpoint, tmp_path):
    copy = _copy_weights(tiny_checkpoint, tmp_path / "copy")
    first = weights_sha256(copy)
    cache = json.loads((copy / CACHE_NAME).read_text())
    entry = cache["files"]["model.safetensors"]
    assert entry["sha256"] == hashlib.sha256((copy / "model.safetensors").read_bytes()).hexdigest()
    # Unchanged size and mtime: the cached file hash is used, the file is not read again.
    entry["sha256"] = "0" * 64
    (copy / CACHE_NAME).write_text(json.dumps(cache))
    assert weights_sha256(copy) != first
    # A rewritten file (new mtime) is hashed again.
    os.utime(copy / "model.safetensors", ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert weights_sha256(copy) == first


def test_unwritable_checkpoint_caches_in_the_user_dir(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copy = _copy_weights(tiny_checkpoint, tmp_path / "copy")
    (copy / CACHE_NAME).mkdir()  # the cache file cannot be written there (as if the folder were read-only)
    digest = weights_sha256(copy)
    cached = list((tmp_path / "cache" / "shirg_eval" / "weights_sha256").glob("*.json"))
    assert len(cached) == 1 and "model.safetensors" in json.loads(cached[0].read_text())["files"]
    assert weights_sha256(copy) == digest == weights_sha256(tiny_checkpoint)


def test_hub_snapshot_reads_blob_names_not_bytes(tmp_path, monkeypatch):
    """huggingface_hub's cache: snapshots/<revision>/file -> ../../blobs/<sha256 of the file>."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = tmp_path / "hub" / "models--owner--name"
    blob_sha = "ab" * 32
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / blob_sha).write_bytes(b"not what the name says")  # proves the bytes are never read
    revision = "c" * 40
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / blob_sha)
    identity = weights_identity(snap)
    assert identity.revision == revision
    assert identity.sha256 == hashlib.sha256(json.dumps([["model.safetensors", blob_sha]]).encode()).hexdigest()
    assert not (snap / CACHE_NAME).exists()  # nothing written into the hub's folders
