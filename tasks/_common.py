"""Shared machinery of the ``chartqa_200`` / ``docvqa_200`` lmms-eval tasks.

* **Stable ids.** ``process_docs`` adds ``shirg_uid`` to every doc: the first 16 hex digits of a sha1 over the
  doc's text (ChartQA: type, question, answer; DocVQA: questionId, question, answers). ChartQA docs whose text
  repeats get the sha1 of their image bytes mixed in; fully identical rows are kept once.
* **Subset rule** (:data:`SUBSET_RULE`): per stratum (ChartQA: ``type``; DocVQA: one stratum) sort the docs by
  ``sha1(f"{seed}:{shirg_uid}")`` and keep the first N (ChartQA 100 ``human_test`` + 100 ``augmented_test``; DocVQA
  200); the kept docs are then ordered by the same key, which mixes the strata (so ``--limit`` sees both).
  Row order never matters. With fewer docs than N in a stratum, all of them are kept and a warning is logged.
* **Manifests.** ``<task dir>/manifests/*.json`` record ``{format, task, seed, rule, quotas, dataset_fingerprint,
  num_source_docs, source, uids}`` where ``dataset_fingerprint`` is the sha1 of the sorted uids of *all* docs
  of the split. When a manifest with the loaded split's fingerprint exists, ``process_docs`` checks that the
  subset equals its ``uids`` (same order) and raises otherwise. ``python tasks/_common.py manifest ...``
  (or ``python -m shirg_eval.tasks._common manifest ...`` when installed) writes one for any dataset.
* **Local data.** :func:`task_class` builds a ``ConfigurableTask`` subclass (wired with ``class:`` in the YAMLs)
  whose ``download`` reads ``SHIRG_CHARTQA_PATH`` / ``SHIRG_DOCVQA_PATH`` (a parquet file, a folder of parquet
  files, or a ``save_to_disk`` folder) instead of the hub, and names that variable when the hub is unreachable.
* **Efficiency.** ``process_results`` reads :func:`shirg_eval.harness.efficiency.lookup` for the doc's uid.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shirg_eval.harness import efficiency
from shirg_eval.metrics import anls, corpus_cider, exact_match, relaxed_correctness
from shirg_eval.model.preprocess import load_strict

try:  # lmms-eval logs through loguru; use it so our warnings land in the same stream
    from loguru import logger as log
except ImportError:  # pragma: no cover - loguru ships with lmms-eval
    import logging

    log = logging.getLogger("shirg_eval.tasks")

TASKS_DIR = Path(__file__).resolve().parent
MANIFEST_FORMAT = "shirg-subset-manifest/1"
SUBSET_SEED = 0
SUBSET_RULE = (
    "shirg_uid = sha1(text fields)[:16]; per stratum, sort docs by sha1(f'{seed}:{shirg_uid}') ascending and keep "
    "the first quota; order the kept docs by the same key; fewer docs than the quota: keep all (warning)"
)
_SEP = "\x1f"


def _sha1(text: str | bytes) -> str:
    return hashlib.sha1(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


# ----------------------------------------------------------------------------------------------- task specs


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_var: str
    hub_path: str
    split: str
    text_columns: tuple[str, ...]
    uid_text: Callable[[dict[str, Any]], str]
    stratum: Callable[[dict[str, Any]], str]
    quotas: dict[str, int] = field(default_factory=dict)
    image_column: str = "image"

    @property
    def manifest_dir(self) -> Path:
        return TASKS_DIR / self.name / "manifests"


def _chartqa_text(doc: dict[str, Any]) -> str:
    return _SEP.join(["chartqa", str(doc["type"]), str(doc["question"]), str(doc["answer"])])


def _docvqa_text(doc: dict[str, Any]) -> str:
    answers = doc.get("answers") or []
    return _SEP.join(["docvqa", str(doc["questionId"]), str(doc["question"]), *sorted(str(a) for a in answers)])


SPECS: dict[str, TaskSpec] = {
    "chartqa_200": TaskSpec(
        name="chartqa_200",
        env_var="SHIRG_CHARTQA_PATH",
        hub_path="lmms-lab-encoder/ChartQA",
        split="test",
        text_columns=("type", "question", "answer"),
        uid_text=_chartqa_text,
        stratum=lambda doc: str(doc["type"]),
        quotas={"human_test": 100, "augmented_test": 100},
    ),
    "docvqa_200": TaskSpec(
        name="docvqa_200",
        env_var="SHIRG_DOCVQA_PATH",
        hub_path="lmms-lab-encoder/DocVQA",
        split="validation",
        text_columns=("questionId", "question", "answers"),
        uid_text=_docvqa_text,
        stratum=lambda doc: "all",
        quotas={"all": 200},
    ),
}


# ----------------------------------------------------------------------------------------------- uids + subset


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
            texts[i] = texts[i] + _SEP + _image_digest(cell)
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


def select_subset(uids: Sequence[str], strata: Sequence[str], quotas: dict[str, int],
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
        if len(members) < quota:
            log.warning(f"{task}: stratum {s!r} has {len(members)} docs (< {quota}): taking all of them")
        chosen.extend(members[:quota])
    return sorted(chosen, key=lambda p: subset_key(uids[p], seed))


def dataset_fingerprint(uids: Iterable[str]) -> str:
    return _sha1("\n".join(sorted(uids)))


def build_manifest(ds: Any, task: str, seed: int = SUBSET_SEED, source: str = "") -> dict[str, Any]:
    spec = SPECS[task]
    if "shirg_uid" in ds.column_names:
        ds = ds.remove_columns("shirg_uid")
    uids, rows, _ = compute_uids(ds, spec)
    picked = select_subset(uids, [spec.stratum(r) for r in rows], spec.quotas, seed, task)
    return {
        "format": MANIFEST_FORMAT,
        "task": task,
        "source": source,
        "seed": seed,
        "rule": SUBSET_RULE,
        "quotas": spec.quotas,
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
    """Subset ``ds`` by the rule, add ``shirg_uid``, and check it against a matching manifest if there is one."""
    spec = SPECS[task]
    if "shirg_uid" in ds.column_names:  # idempotent: re-derive rather than trust an old column
        ds = ds.remove_columns("shirg_uid")
    check_columns(ds, spec)
    uids, rows, keep = compute_uids(ds, spec)
    picked = select_subset(uids, [spec.stratum(r) for r in rows], spec.quotas, seed, task)
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
                 "(`python tasks/_common.py manifest --task ...` writes one)")
    out = ds.select([keep[p] for p in picked])
    if spec.image_column in out.column_names and getattr(out.features[spec.image_column], "decode", False):
        # datasets decodes (and fully loads) images on access, under lmms-eval's global LOAD_TRUNCATED_IMAGES:
        # a truncated file would arrive grey-padded. Keep the bytes and decode strictly in doc_to_visual.
        from datasets import Image

        out = out.cast_column(spec.image_column, Image(decode=False))
    return out.add_column("shirg_uid", chosen_uids)


# ----------------------------------------------------------------------------------------------- results


def prediction_text(results: Sequence[Any]) -> str:
    pred = results[0] if results else ""
    if isinstance(pred, (list, tuple)):
        pred = pred[0] if pred else ""
    if not isinstance(pred, str):
        pred = getattr(pred, "text", None) or ("" if pred is None else str(pred))
    return pred.strip()


EFFICIENCY_AGGREGATES = {
    # aggregated metric name -> (EfficiencyRecord field, statistic)
    "latency_ms_mean": ("latency_ms", "mean"),
    "latency_ms_p50": ("latency_ms", "p50"),
    "latency_ms_p95": ("latency_ms", "p95"),
    "prefill_ms_mean": ("prefill_ms", "mean"),
    "denoise_ms_mean": ("denoise_ms", "mean"),
    "peak_mem_gb_max": ("peak_mem_gb", "max"),
    "visual_tokens_mean": ("visual_tokens", "mean_all"),  # a count is exact: the warm-up sample counts too
}


def efficiency_fields(uid: str) -> dict[str, Any]:
    """Per-sample efficiency columns for the samples log plus the per-sample items of the aggregated metrics.

    Pure: reads the record, never removes it (process_results runs in threads and may be retried).
    """
    rec = efficiency.lookup(uid)
    out: dict[str, Any] = {}
    for name in efficiency.EFFICIENCY_FIELDS:
        out[name] = None if rec is None else getattr(rec, name)
    out["warmup"] = None if rec is None else bool(rec.warmup)
    out["peak_mem_kind"] = None if rec is None else rec.peak_mem_kind
    out["run_meta"] = None if rec is None else dict(rec.meta)
    for metric, (name, _stat) in EFFICIENCY_AGGREGATES.items():
        # The aggregation needs the warm-up flag next to the value, so each item carries both.
        out[metric] = {"value": out[name], "warmup": bool(out["warmup"])}
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def aggregate_efficiency(items: Sequence[Any], stat: str) -> float | None:
    """Warm-up samples are left out unless every measured sample is warm-up (``mean_all``: a mean over every
    sample, for exact counts); None values are skipped, and with no value at all the result is None (never 0)."""
    measured = [(float(it["value"]), bool(it.get("warmup")))
                for it in items if isinstance(it, dict) and it.get("value") is not None]
    if stat == "mean_all":
        values, stat = [v for v, _ in measured], "mean"
    else:
        values = [v for v, warm in measured if not warm] or [v for v, _ in measured]
    if not values:
        return None
    if stat == "mean":
        return sum(values) / len(values)
    if stat == "max":
        return max(values)
    if stat.startswith("p"):
        return _percentile(values, float(stat[1:]))
    raise ValueError(f"unknown statistic {stat!r}")


def _efficiency_aggregator(metric: str) -> Callable[[Sequence[Any]], float | None]:
    stat = EFFICIENCY_AGGREGATES[metric][1]

    def agg(items: Sequence[Any]) -> float | None:
        return aggregate_efficiency(items, stat)

    agg.__name__ = f"aggregate_{metric}"
    return agg


agg_latency_ms_mean = _efficiency_aggregator("latency_ms_mean")
agg_latency_ms_p50 = _efficiency_aggregator("latency_ms_p50")
agg_latency_ms_p95 = _efficiency_aggregator("latency_ms_p95")
agg_prefill_ms_mean = _efficiency_aggregator("prefill_ms_mean")
agg_denoise_ms_mean = _efficiency_aggregator("denoise_ms_mean")
agg_peak_mem_gb_max = _efficiency_aggregator("peak_mem_gb_max")
agg_visual_tokens_mean = _efficiency_aggregator("visual_tokens_mean")


def aggregate_cider(items: Sequence[Any]) -> float | None:
    """Corpus CIDEr-D x100 over the per-sample ``{"pred", "refs"}`` items."""
    pairs = [it for it in items if isinstance(it, dict) and it.get("refs")]
    if not pairs:
        return None
    return corpus_cider([str(it.get("pred") or "") for it in pairs], [list(it["refs"]) for it in pairs])


def failed_sample(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A sample the model could not run (allow_failures=true): no score keys at all, so lmms-eval's means skip
    it instead of counting it wrong; ``failed`` counts it and ``error`` says why."""
    rec = efficiency.lookup(doc["shirg_uid"])
    if rec is None or rec.error is None:
        return None
    return {"shirg_uid": doc["shirg_uid"], "failed": 1, "error": rec.error, "run_meta": dict(rec.meta)}


def count_failed(items: Sequence[Any]) -> int:
    return int(sum(int(x or 0) for x in items))


def chartqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    failed = failed_sample(doc)
    if failed is not None:
        return failed
    pred = prediction_text(results)
    answer = str(doc["answer"])
    score = 1.0 if relaxed_correctness(pred, answer) else 0.0
    out: dict[str, Any] = {"shirg_uid": doc["shirg_uid"], "failed": 0, "relaxed_overall": score}
    # Same split rule as lmms-eval's chartqa utils: anything that is not human_test counts as augmented.
    out["relaxed_human_split" if doc["type"] == "human_test" else "relaxed_augmented_split"] = score
    out["exact_match"] = exact_match(pred, [answer])
    out["cider"] = {"pred": pred, "refs": [answer]}
    out.update(efficiency_fields(doc["shirg_uid"]))
    return out


def docvqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    failed = failed_sample(doc)
    if failed is not None:
        return failed
    pred = prediction_text(results)
    answers = [str(a) for a in (doc.get("answers") or [])]
    out: dict[str, Any] = {
        "shirg_uid": doc["shirg_uid"],
        "failed": 0,
        "anls": anls(pred, answers),
        "exact_match": exact_match(pred, answers),
        "cider": {"pred": pred, "refs": answers},
    }
    out.update(efficiency_fields(doc["shirg_uid"]))
    return out


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    # As lmms-eval's chartqa/docvqa (RGB convert), but a truncated file is an error, never grey padding.
    return [load_strict(open_image(doc["image"])).convert("RGB")]


def open_image(value: Any) -> Any:
    """A PIL image from a decoded image or datasets' undecoded ``{"bytes", "path"}`` cell."""
    if isinstance(value, dict):
        from PIL import Image as PILImage

        if value.get("bytes"):
            return PILImage.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return PILImage.open(value["path"])
        raise ValueError("image cell has neither bytes nor path")
    return value


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


# ----------------------------------------------------------------------------------------------- local data


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def local_source(path_str: str, split: str) -> tuple[str, dict[str, Any]]:
    """(lmms-eval ``DATASET_PATH``, ``dataset_kwargs``) that make ConfigurableTask.download read ``path_str``."""
    path = Path(path_str).expanduser().resolve()
    if path.is_file():
        if path.suffix == ".parquet":
            return "parquet", {"data_files": {split: [str(path)]}}
        if path.suffix == ".arrow":
            return "arrow", {"data_files": {split: [str(path)]}}
        raise ValueError(f"{path}: expected a .parquet file, a folder of parquet files or a save_to_disk folder")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / "dataset_dict.json").exists():  # DatasetDict.save_to_disk
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split in splits:
            return str(path), {"load_from_disk": True}
        if len(splits) == 1:
            log.warning(f"{path} has split {splits[0]!r}, not {split!r}: using it")
            path = path / splits[0]
        else:
            raise ValueError(f"{path} has splits {splits}, none of them {split!r}")
    if (path / "state.json").exists():  # Dataset.save_to_disk: its arrow shards
        files = sorted(str(p) for p in path.glob("*.arrow"))
        return "arrow", {"data_files": {split: files}}
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        # A hub snapshot keeps each split's shards under names like data/test-00000-of-00002.parquet.
        named = [p for p in parquet if p.name.startswith(f"{split}-") or p.stem == split or p.parent.name == split]
        return "parquet", {"data_files": {split: [str(p) for p in (named or parquet)]}}
    raise ValueError(f"{path}: no parquet files and not a save_to_disk folder")


def check_columns(ds: Any, spec: TaskSpec) -> None:
    """The data must have the hub schema's columns; say which are missing instead of a KeyError later."""
    source = os.environ.get(spec.env_var, "").strip() or spec.hub_path
    columns = set(ds.column_names)
    # Text columns only: lmms-eval also runs process_docs on an image-less copy of the split.
    missing = sorted(set(spec.text_columns) - columns)
    if missing:
        raise ValueError(
            f"{spec.name}: data {source} ({spec.env_var}) lacks column(s) {missing}; found {sorted(columns)}. "
            "It must have the hub dataset's schema (`shirg-synth` writes one)."
        )


_TASK_CLASSES: dict[str, type] = {}


def task_class(task: str) -> type:
    """A ConfigurableTask subclass for ``task`` (referenced from the YAML's ``class:``).

    lmms-eval 0.7.3 loads the dataset in ``download`` before ``process_docs`` ever runs, so the env var must be
    honoured there; YAML has no env-var interpolation. A ``class:`` task gets only its config (no model name),
    so ``lmms_eval_specific_kwargs`` falls back to ``default`` (all these tasks define) and the task is always a
    plain ConfigurableTask, which is what simple models (shirg_eval's is one) use.
    """
    if task in _TASK_CLASSES:
        return _TASK_CLASSES[task]
    from lmms_eval.api.task import ConfigurableTask

    spec = SPECS[task]
    parent_download = ConfigurableTask.download
    unretried_download = getattr(parent_download, "__wrapped__", parent_download)

    class ShirgTask(ConfigurableTask):
        SPEC = spec

        def __init__(self, config: dict[str, Any] | None = None, model_name: str | None = None, **kwargs: Any):
            config = {k: v for k, v in (config or {}).items() if k != "class"}
            super().__init__(config=config, model_name=model_name, **kwargs)

        def download(self, dataset_kwargs: dict[str, Any] | None = None) -> None:
            split = self.config.test_split or self.config.validation_split or spec.split
            local = os.environ.get(spec.env_var, "").strip()
            if local:
                self.DATASET_PATH, kwargs = local_source(local, split)
                self.DATASET_NAME = None
                log.info(f"{spec.name}: reading local data {local} ({spec.env_var})")
                # A local read fails the same way every time: skip lmms-eval's retry loop.
                return unretried_download(self, kwargs)
            try:
                if _offline():
                    return unretried_download(self, dataset_kwargs)
                return parent_download(self, dataset_kwargs)
            except Exception as exc:
                cause = exc
                last = getattr(exc, "last_attempt", None)  # tenacity.RetryError wraps the real error
                if last is not None and last.exception() is not None:
                    cause = last.exception()
                raise RuntimeError(
                    f"{spec.name}: could not load {self.DATASET_PATH!r} (split {split!r}) from the Hugging Face hub: "
                    f"{type(cause).__name__}: {cause}. Offline? Set {spec.env_var} to a local parquet file, a folder "
                    f"of parquet files or a save_to_disk folder (`shirg-synth --out DIR` renders a synthetic one)."
                ) from exc

    ShirgTask.__name__ = ShirgTask.__qualname__ = "".join(p.capitalize() for p in task.split("_")) + "Task"
    _TASK_CLASSES[task] = ShirgTask
    return ShirgTask


# ----------------------------------------------------------------------------------------------- CLI


def load_split(path_str: str, split: str) -> Any:
    """Load a local dataset split the way the task would (without lmms-eval)."""
    import datasets

    builder, kwargs = local_source(path_str, split)
    if kwargs.get("load_from_disk"):
        return datasets.load_from_disk(builder)[split]
    return datasets.load_dataset(builder, **kwargs)[split]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a subset manifest for chartqa_200 / docvqa_200.")
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

        name = "DocVQA" if args.task == "docvqa_200" else None
        ds = datasets.load_dataset(spec.hub_path, name, split=spec.split)
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
