"""Where a task's documents come from: a local copy (``SHIRG_CHARTQA_PATH`` / ``SHIRG_DOCVQA_PATH``) or the hub.

:func:`task_class` builds the ``ConfigurableTask`` subclass the YAMLs name with ``class:``. Its ``download`` reads
the env var's parquet file, folder of parquet files or ``save_to_disk`` folder when set. Otherwise it reads the
hub, but first checks within seconds that the hub answers: lmms-eval would spend about 80 s retrying an
unreachable hub. With ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set it reads the datasets cache once, without
retries. Either failure raises :class:`DataUnavailableError`, whose message names the env var to set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shirg_eval.harness import compat
from shirg_eval.tasks.specs import SPECS, TaskSpec

try:  # lmms-eval logs through loguru; use it so our warnings land in the same stream
    from loguru import logger as log
except ImportError:  # pragma: no cover - loguru ships with lmms-eval
    import logging

    log = logging.getLogger("shirg_eval.tasks")

HUB_PROBE_TIMEOUT_S = 5.0


class DataUnavailableError(RuntimeError):
    """A task's data can be read neither locally nor from the hub; the message says what to set."""


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or None when it answers at all."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)  # any HTTP status means reachable
    except Exception as exc:  # noqa: BLE001 - DNS, refused, timeout, proxy, TLS: all mean "no hub"
        return f"{type(exc).__name__}: {exc}"
    return None


def local_source(path_str: str, split: str) -> tuple[str, dict[str, Any]]:
    """(lmms-eval ``DATASET_PATH``, ``dataset_kwargs``) that make ConfigurableTask.download read ``path_str``.

    Parquet files are checked first (footer only): an empty or non-parquet file is named here, instead of the
    ``DatasetGenerationError`` that ``datasets`` raises with the cause buried in its chain."""
    builder, kwargs = _local_source(path_str, split)
    if builder == "parquet":
        check_parquet_rows(kwargs["data_files"][split])
    return builder, kwargs


def check_parquet_rows(files: list[str]) -> int:
    """Total rows of ``files``; a file that is not parquet, or data with 0 rows, is a ValueError naming it."""
    import pyarrow.parquet as pq

    total = 0
    for name in files:
        try:
            total += pq.ParquetFile(name).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise ValueError(f"{name} is not a readable parquet file ({type(err).__name__}: {err})") from None
    if total == 0:
        shown = files[0] if len(files) == 1 else f"{len(files)} parquet files ({files[0]}, ...)"
        raise ValueError(f"{shown} has 0 rows: nothing to evaluate. Point the variable at the task's data "
                         "(`shirg-synth --out DIR` renders a synthetic set)")
    return total


def _local_source(path_str: str, split: str) -> tuple[str, dict[str, Any]]:
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


def load_split(path_str: str, split: str) -> Any:
    """Load a local dataset split the way the task would (without lmms-eval)."""
    import datasets

    builder, kwargs = local_source(path_str, split)
    if kwargs.get("load_from_disk"):
        return datasets.load_from_disk(builder)[split]
    return datasets.load_dataset(builder, **kwargs)[split]


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


def _unavailable(spec: TaskSpec, where: str, why: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"{spec.name}: could not load {spec.hub_path!r} (split {spec.split!r}) {where}: {why}. Set {spec.env_var} "
        "to a local parquet file, a folder of parquet files or a save_to_disk folder (`shirg-synth --out DIR` "
        "renders a synthetic one)."
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
    compat.keep_results_to_metrics()
    spec = SPECS[task]
    ConfigurableTask = compat.configurable_task()  # noqa: N806 - a class
    parent_download = ConfigurableTask.download
    unretried_download = compat.unretried_download()

    class ShirgTask(ConfigurableTask):
        SPEC = spec
        SHIRG_TASK = True  # results.json keeps only metric_list metrics (compat.keep_results_to_metrics)

        def __init__(self, config: dict[str, Any] | None = None, model_name: str | None = None, **kwargs: Any):
            config = {k: v for k, v in (config or {}).items() if k != "class"}
            super().__init__(config=config, model_name=model_name, **kwargs)

        def download(self, dataset_kwargs: dict[str, Any] | None = None) -> None:
            split = self.config.test_split or self.config.validation_split or spec.split
            local = os.environ.get(spec.env_var, "").strip()
            if not local and spec.default_data is not None:
                local = str(spec.default_data())
            if local:
                path, kwargs = local_source(local, split)
                compat.set_dataset_source(self, path, None)
                log.info(f"{spec.name}: reading local data {local} ({spec.env_var})")
                # A local read fails the same way every time: skip lmms-eval's retry loop.
                return unretried_download(self, kwargs)
            if offline():
                try:
                    return unretried_download(self, dataset_kwargs)
                except Exception as exc:  # noqa: BLE001 - whatever the cache lookup raised, the fix is the same
                    raise _unavailable(spec, "from the datasets cache (HF_HUB_OFFLINE is set)",
                                       f"{type(exc).__name__}: {exc}") from None
            why = hub_unreachable()
            if why is not None:
                raise _unavailable(spec, "from the Hugging Face hub", f"the hub is unreachable ({why}); "
                                   "HF_HUB_OFFLINE=1 reads the datasets cache instead") from None
            try:
                return parent_download(self, dataset_kwargs)
            except Exception as exc:
                cause = exc
                last = getattr(exc, "last_attempt", None)  # tenacity.RetryError wraps the real error
                if last is not None and last.exception() is not None:
                    cause = last.exception()
                raise _unavailable(spec, "from the Hugging Face hub", f"{type(cause).__name__}: {cause}") from exc

    ShirgTask.__name__ = ShirgTask.__qualname__ = "".join(p.capitalize() for p in task.split("_")) + "Task"
    _TASK_CLASSES[task] = ShirgTask
    return ShirgTask
