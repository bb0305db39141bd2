"""The 200-document subsets: stable doc ids, the seeded subset rule, and the manifests that pin them.

* **Stable ids.** ``process_docs`` adds ``shirg_uid`` to every doc: the first 16 hex digits of a sha1 over the
  doc's text (ChartQA: type, question, answer; DocVQA: questionId, question, answers). ChartQA docs whose text
  repeats get the sha1 of their image bytes mixed in; fully identical rows are kept once.
* **Subset rule** (:data:`SUBSET_RULE`): per stratum (ChartQA: ``type``; OCRBench: ``question_type``; InfoVQA:
  the sorted ``answer_type`` list; DocVQA, TextVQA: one stratum) sort the docs by ``sha1(f"{seed}:{shirg_uid}")``
  and keep the first N (ChartQA 100 ``human_test`` + 100 ``augmented_test``; DocVQA, TextVQA 200; OCRBench 10 per
  recognition type, 40 per VQA/KIE type, 20 handwritten math; InfoVQA 200 shared by :func:`proportional_quotas`,
  since its answer-type combinations are open-ended); the kept docs are then ordered by the same key, which mixes the strata (so ``--limit`` sees both).
  Row order never matters. With fewer docs than N in a stratum, all of them are kept and a warning is logged.
* **Manifests.** ``<task dir>/manifests/*.json`` record ``{format, task, seed, rule, quotas, dataset_fingerprint,
  num_source_docs, source, uids}`` where ``dataset_fingerprint`` is the sha1 of the sorted uids of *all* docs
  of the split. When a manifest with the loaded split's fingerprint exists, ``process_docs`` checks that the
  subset equals its ``uids`` (same order) and raises otherwise. ``python -m shirg_eval.tasks.subset manifest ...``
  writes one for any dataset.
* **Question.** ``process_docs`` also adds ``shirg_question`` (the doc's question alone), the text that
  conditions visual-token selection (see :mod:`shirg_eval.query`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from shirg_eval.query import QUESTION_FIELD
from shirg_eval.tasks.data_source import check_columns, load_split
from shirg_eval.tasks.specs import SEP, SPECS, TaskSpec

try:  # lmms-eval logs through loguru; use it so our warnings land in the same stream
    from loguru import logger as log
except ImportError:  # pragma: no cover - loguru ships with lmms-eval
    import logging

    log = logging.getLogger("shirg_eval.tasks")

MANIFEST_FORMAT = "shirg-subset-manifest/1"
SUBSET_SEED = 0
SUBSET_RULE = (
    "shirg_uid = sha1(text fields)[:16]; per stratum, sort docs by sha1(f'{seed}:{shirg_uid}') ascending and keep "
    "the first quota; order the kept docs by the same key; fewer docs than the quota: keep all (warning)"
)
_DERIVED_COLUMNS = ("shirg_uid", QUESTION_FIELD)


def _sha1(text: str | bytes) -> str:
    return hashlib.sha1(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def _image_digest(value: Any) -> str:
    """sha1 of an undecoded ``Image`` cell ({"bytes", "path"}), falling back to the file it points at."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return _sha1(value["bytes"])
        if value.get("path") and os.path.exists(value["path"]):
            return _sha1(Path(value["path"]).read_bytes())
    if isinstance(value, bytes):
        return _sha1(value)
    return ""


def compute_uids(ds: Any, spec: TaskSpec) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """(uid per kept row, text rows, kept row indices). Exact duplicate rows are dropped (all but one)."""
    cols = [c for c in spec.text_columns if c in ds.column_names]
    rows = ds.select_columns(cols).to_list()
    texts = [spec.uid_text(r) for r in rows]
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    repeated = [i for i, t in enumerate(texts) if counts[t] > 1]
    if repeated and spec.image_column in ds.column_names:
        # Same text on different images (e.g. "How many bars are there?"): the image tells them apart.
        from datasets import Image

        raw = ds.select(repeated).cast_column(spec.image_column, Image(decode=False))[spec.image_column]
        for i, cell in zip(repeated, raw, strict=True):
            texts[i] = texts[i] + SEP + _image_digest(cell)
    uids, keep, seen = [], [], set()
    for i, t in enumerate(texts):
        uid = _sha1(t)[:16]
        if uid in seen:
            continue  # identical row (text and image): keeping one copy cannot change any score
        seen.add(uid)
        uids.append(uid)
        keep.append(i)
    if len(keep) < len(texts):
        log.warning(f"{spec.name}: dropped {len(texts) - len(keep)} exact duplicate rows")
    return uids, [rows[i] for i in keep], keep


def subset_key(uid: str, seed: int = SUBSET_SEED) -> str:
    return _sha1(f"{seed}:{uid}")


def select_subset(uids: Sequence[str], strata: Sequence[str], quotas: dict[str, int | None],
                  seed: int = SUBSET_SEED, task: str = "") -> list[int]:
    """Positions (into ``uids``) of the subset, ordered by key; see :data:`SUBSET_RULE`."""
    by_stratum: dict[str, list[int]] = {s: [] for s in quotas}
    ignored = 0
    for pos, s in enumerate(strata):
        if s in by_stratum:
            by_stratum[s].append(pos)
        else:
            ignored += 1
    if ignored:
        log.warning(f"{task}: {ignored} docs belong to no stratum of {sorted(quotas)} and are ignored")
    chosen: list[int] = []
    for s, quota in quotas.items():
        members = sorted(by_stratum[s], key=lambda p: subset_key(uids[p], seed))
        if quota is None:  # the whole stratum
            chosen.extend(members)
            continue
        if len(members) < quota:
            log.warning(f"{task}: stratum {s!r} has {len(members)} docs (< {quota}): taking all of them")
        chosen.extend(members[:quota])
    return sorted(chosen, key=lambda p: subset_key(uids[p], seed))


def proportional_quotas(strata: Sequence[str], total: int) -> dict[str, int | None]:
    """Quotas summing to ``total`` (or every doc, if fewer), each stratum's share of the docs by the largest
    remainder method; remainders tie-break by stratum size, then name, so row order never matters."""
    sizes: dict[str, int] = {}
    for s in strata:
        sizes[s] = sizes.get(s, 0) + 1
    n = sum(sizes.values())
    if n <= total:
        return {s: None for s in sorted(sizes)}
    exact = {s: total * size / n for s, size in sizes.items()}
    quotas = {s: int(v) for s, v in exact.items()}
    spare = total - sum(quotas.values())
    for s in sorted(sizes, key=lambda s: (-(exact[s] - quotas[s]), -sizes[s], s))[:spare]:
        quotas[s] += 1
    return {s: quotas[s] for s in sorted(quotas)}


def quotas_for(spec: TaskSpec, strata: Sequence[str]) -> dict[str, int | None]:
    if spec.proportional_total is not None:
        return proportional_quotas(strata, spec.proportional_total)
    return spec.quotas


def dataset_fingerprint(uids: Iterable[str]) -> str:
    return _sha1("\n".join(sorted(uids)))


def _without_derived(ds: Any) -> Any:
    present = [c for c in _DERIVED_COLUMNS if c in ds.column_names]
    return ds.remove_columns(present) if present else ds  # idempotent: re-derive rather than trust old columns


def build_manifest(ds: Any, task: str, seed: int = SUBSET_SEED, source: str = "") -> dict[str, Any]:
    spec = SPECS[task]
    uids, rows, _ = compute_uids(_without_derived(ds), spec)
    strata = [spec.stratum(r) for r in rows]
    quotas = quotas_for(spec, strata)
    picked = select_subset(uids, strata, quotas, seed, task)
    return {
        "format": MANIFEST_FORMAT,
        "task": task,
        "source": source,
        "seed": seed,
        "rule": SUBSET_RULE,
        "quotas": quotas,
        "num_source_docs": len(uids),
        "dataset_fingerprint": dataset_fingerprint(uids),
        "uids": [uids[p] for p in picked],
    }


def find_manifest(spec: TaskSpec, fingerprint: str, seed: int) -> tuple[Path, dict[str, Any]] | None:
    if not spec.manifest_dir.is_dir():
        return None
    for path in sorted(spec.manifest_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning(f"unreadable manifest {path}")
            continue
        if data.get("dataset_fingerprint") == fingerprint and data.get("seed") == seed:
            return path, data
    return None


def process_docs_for(ds: Any, task: str, seed: int = SUBSET_SEED) -> Any:
    """Subset ``ds`` by the rule, add ``shirg_uid`` and ``shirg_question``, and check the subset against a
    matching manifest if there is one."""
    spec = SPECS[task]
    ds = _without_derived(ds)
    check_columns(ds, spec)
    uids, rows, keep = compute_uids(ds, spec)
    strata = [spec.stratum(r) for r in rows]
    picked = select_subset(uids, strata, quotas_for(spec, strata), seed, task)
    chosen_uids = [uids[p] for p in picked]
    found = find_manifest(spec, dataset_fingerprint(uids), seed)
    if found is not None:
        path, manifest = found
        if manifest.get("uids") != chosen_uids:
            raise ValueError(
                f"{task}: the selected subset differs from manifest {path} (same dataset fingerprint); "
                "the subset rule or uid code changed. Regenerate the manifest only if that change is intended."
            )
        log.info(f"{task}: subset matches manifest {path.name}")
    else:
        log.info(f"{task}: no manifest for dataset fingerprint {dataset_fingerprint(uids)[:12]} "
                 "(`python -m shirg_eval.tasks.subset manifest --task ...` writes one)")
    out = ds.select([keep[p] for p in picked])
    if spec.image_column in out.column_names and getattr(out.features[spec.image_column], "decode", False):
        # datasets decodes (and fully loads) images on access, under lmms-eval's global LOAD_TRUNCATED_IMAGES:
        # a truncated file would arrive grey-padded. Keep the bytes and decode strictly in doc_to_visual.
        from datasets import Image

        out = out.cast_column(spec.image_column, Image(decode=False))
    questions = question_texts(out[spec.question_column], task)  # text, whatever the column holds
    out = out.remove_columns(spec.question_column).add_column(spec.question_column, questions)
    questions = [spec.question_text(q) for q in questions]  # as the task's prompt shows it
    return out.add_column("shirg_uid", chosen_uids).add_column(QUESTION_FIELD, questions)


def question_texts(values: Sequence[Any], task: str) -> list[str]:
    """The questions as text, whatever the column holds: bytes are decoded as UTF-8 (invalid bytes replaced by
    U+FFFD, never shown as Python's ``b'...'`` repr), None is empty. Replaced bytes and empty questions are each
    counted in one warning per task: an empty question is still asked (selection then uses saliency alone)."""
    texts, replaced, empty = [], 0, 0
    for value in values:
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                value = bytes(value).decode("utf-8", errors="replace")
                replaced += 1
        text = "" if value is None else str(value)
        empty += not text.strip()
        texts.append(text)
    if replaced:
        log.warning(f"{task}: {replaced} of {len(texts)} questions are not valid UTF-8; decoded with U+FFFD in "
                    "place of the invalid bytes (fix the data's encoding to ask them as written)")
    if empty:
        log.warning(f"{task}: {empty} of {len(texts)} questions are empty; the model is asked the instruction alone")
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shirg_eval.tasks.subset",
                                     description="Write a subset manifest for a *_200 task.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest", help="compute the subset of a dataset and write its manifest JSON")
    m.add_argument("--task", choices=sorted(SPECS), required=True)
    m.add_argument("--data", help="local parquet file / folder / save_to_disk folder (default: the hub dataset)")
    m.add_argument("--seed", type=int, default=SUBSET_SEED)
    m.add_argument("--source", default="", help="free text recorded in the manifest (default: --data or hub path)")
    m.add_argument("--out", help="output JSON (default: tasks/<task>/manifests/<source-slug>_seed<seed>.json)")
    args = parser.parse_args(argv)
    spec = SPECS[args.task]
    if args.data:
        ds = load_split(args.data, spec.split)
        source = args.source or f"local:{Path(args.data).name}"
    else:
        import datasets

        ds = datasets.load_dataset(spec.hub_path, spec.hub_name, split=spec.split)
        source = args.source or f"hub:{spec.hub_path}:{spec.split}"
    manifest = build_manifest(ds, args.task, args.seed, source)
    slug = "".join(c if c.isalnum() else "_" for c in source).strip("_")
    out = Path(args.out) if args.out else spec.manifest_dir / f"{slug}_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out}: {len(manifest['uids'])} of {manifest['num_source_docs']} docs, "
          f"fingerprint {manifest['dataset_fingerprint'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
