"""A per-run answer journal so that an interrupted evaluation resumes without redoing finished samples.

Each generated sample is appended (and fsync'ed) as one JSON line: its key, the answer text and its efficiency
record as measured when it ran. A rerun of the same configuration reads the journal back and reuses those
entries, marked ``resumed`` in ``run_meta``; timings stay the ones measured originally.

The journal file is named by a hash of everything that determines the answer (variant and its parameters,
checkpoint config, LoRA adapter hash, generation settings, seed), so a changed setting never reuses stale text.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..records import EfficiencyRecord
from ..run_lock import RunLock


def run_key(description: dict[str, Any]) -> str:
    blob = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AnswerJournal:
    """The journal of one run folder and rank. Its writer holds an OS lock (``writer-rank<R>.lock``) for as long as
    the process lives, so a second evaluation into the same folder is refused instead of answering every sample
    twice; data-parallel ranks (and sweep shards, which write other folders) each hold their own."""

    def __init__(self, directory: str | Path, description: dict[str, Any], rank: int = 0):
        self.lock = self.writer_lock(directory, rank)
        self.path = Path(directory) / f"answers-{run_key(description)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write: that sample is simply redone
                self.entries[entry["key"]] = entry
        if not self.path.exists():
            self.path.write_text("")
            (self.path.parent / f"{self.path.stem}.json").write_text(json.dumps(description, indent=2, default=str))

    @staticmethod
    def writer_lock(directory: str | Path, rank: int = 0) -> RunLock:
        """Take (or share, within this process) the folder's writer lock for ``rank``; refused while another
        process holds it. Callers take it as early as they can, before loading a model."""
        return RunLock(Path(directory) / f"writer-rank{rank}.lock", f"evaluation journal {directory}",
                       "Wait for that evaluation to end or stop it, or pass another --output_path (or journal= in "
                       "--model_args).").acquire()

    @staticmethod
    def sample_key(task: str, split: str, doc_key: str, gen: dict[str, Any]) -> str:
        return f"{task}/{split}/{doc_key}/" + run_key(gen)

    def get(self, key: str) -> tuple[str, EfficiencyRecord | None] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        rec = entry.get("record")
        record = EfficiencyRecord.from_json(rec) if rec else None
        if record is not None:
            record.meta = {**record.meta, "resumed": True}
        return entry["text"], record

    def add(self, key: str, text: str, record: EfficiencyRecord | None) -> None:
        entry = {"key": key, "text": text, "record": record.as_dict() if record else None}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries[key] = entry

    def close(self) -> None:
        self.lock.release()

    def __len__(self) -> int:
        return len(self.entries)
