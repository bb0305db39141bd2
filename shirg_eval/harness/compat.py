"""Every use of lmms-eval's internals, in one place, checked against the version it was written for.

Written against lmms-eval 0.7.3 (pinned in pyproject.toml). Importing this module checks the installed version
and raises :class:`LmmsEvalVersionError` on another one, instead of misbehaving quietly. An upgrade re-reads
this file only: each use below says what it relies on and why no public extension point does the job.

The public extension points are used where they suffice, outside this file: models register through the
``lmms_eval.models`` entry point (``registration.py``), the tasks' per-sample fields are plain
``process_results`` keys, and the tasks' data source is a task ``class:`` overriding ``download``
(``tasks/data_source.py``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

LMMS_EVAL_VERSION = "0.7.3"


class LmmsEvalVersionError(RuntimeError):
    """The installed lmms-eval is not the version whose internals this module uses."""


def check_version(found: str | None = None) -> None:
    """Raise :class:`LmmsEvalVersionError` unless lmms-eval ``LMMS_EVAL_VERSION`` is installed."""
    if found is None:
        try:
            found = importlib.metadata.version("lmms_eval")
        except importlib.metadata.PackageNotFoundError:
            found = "none"
    if found != LMMS_EVAL_VERSION:
        raise LmmsEvalVersionError(
            f"shirg-eval was written against lmms-eval {LMMS_EVAL_VERSION}, found {found}; pin "
            f"lmms-eval=={LMMS_EVAL_VERSION} (`make setup` installs it), or port shirg_eval/harness/compat.py, "
            "which holds every use of lmms-eval's internals"
        )


check_version()


# ---- the command line (cli/lmms_eval.py, harness/launch.py) ----------------------------------------------------
# lmms-eval's CLI logs a failed evaluation and exits 0 (``cli_evaluate`` catches every exception of
# ``cli_evaluate_single`` unless --verbosity DEBUG, which would also flood the log); the ``lmms_eval`` command
# needs the failure to set its exit code and to print a data error without the traceback. ``cli_evaluate`` looks
# ``cli_evaluate_single`` up in its module's globals at each call, so wrapping that global is the one hook.
# ``simple_evaluate`` + ``EvaluationTracker`` (public) would do one config, but the command must keep every flag
# of lmms-eval's CLI (--config files with several models, --wandb_args, ...): rebuilding ``cli_evaluate`` on them
# would copy its ~300 lines.


def parse_eval_args() -> argparse.Namespace:
    """lmms-eval's own argument parser over ``sys.argv`` (``lmms_eval.__main__.parse_eval_args``)."""
    from lmms_eval.__main__ import parse_eval_args as parse

    return parse()[1]


def cli_evaluate(args: argparse.Namespace) -> None:
    """lmms-eval's ``lmms_eval.__main__.cli_evaluate``: every config of ``args``, logging, accelerate."""
    from lmms_eval.__main__ import cli_evaluate as evaluate

    evaluate(args)


def wrap_cli_evaluate_single(wrap: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]) -> None:
    """Replace ``lmms_eval.__main__.cli_evaluate_single`` (one config -> ``(results, samples)``) by
    ``wrap(original)``; a second call wraps the original again, never the previous wrapper."""
    import lmms_eval.__main__ as lmms_main

    original = lmms_main.cli_evaluate_single
    original = getattr(original, "_shirg_original", original)
    wrapped = wrap(original)
    wrapped._shirg_original = original
    wrapped.__wrapped__ = original
    lmms_main.cli_evaluate_single = wrapped


# ---- results.json (tasks/results.py) --------------------------------------------------------------------
# lmms-eval writes every key ``process_results`` returns twice: into the sample's row of the samples log (wanted:
# the leaderboard reads shirg_uid, run_meta, latency_ms there) and into results.json as ``"<key>,none": []`` for
# keys no metric aggregates. No hook sits between the two; declaring the fields in metric_list with an
# aggregation would put them into results.json as numbers instead. ``evaluator.consolidate_results`` is called
# once, after aggregation and after the sample rows are built: dropping the keys there changes results.json only.


def keep_results_to_metrics(marker: str = "SHIRG_TASK") -> None:
    """results.json holds only the ``metric_list`` metrics of tasks whose class sets ``marker`` (idempotent)."""
    import lmms_eval.evaluator as evaluator

    original = evaluator.consolidate_results
    if getattr(original, "shirg_metrics_only", False):
        return

    def consolidate_results(eval_tasks):  # noqa: ANN001, ANN202 - lmms-eval's signature
        for task_output in eval_tasks:  # lmms_eval.evaluator_utils.TaskOutput
            task = task_output.task
            if getattr(task, marker, False):
                metrics = set(task.aggregation())
                for key in [k for k in task_output.sample_metrics if k[0] not in metrics]:
                    del task_output.sample_metrics[key]
        return original(eval_tasks)

    consolidate_results.shirg_metrics_only = True
    consolidate_results.__wrapped__ = original
    evaluator.consolidate_results = consolidate_results


# ---- a task's data (tasks/data_source.py) ---------------------------------------------------------------
# ``ConfigurableTask.download`` (the public override point, used through the YAMLs' ``class:``) reads the
# dataset from the instance's ``DATASET_PATH`` / ``DATASET_NAME`` attributes, and is wrapped in a tenacity retry
# (about 80 s against an unreachable hub). A local read fails the same way every time, so it calls the
# function under the retry decorator (``__wrapped__``).


def configurable_task() -> type:
    from lmms_eval.api.task import ConfigurableTask

    return ConfigurableTask


def unretried_download() -> Callable[..., Any]:
    """``ConfigurableTask.download`` without its retry loop (the function tenacity wraps)."""
    download = configurable_task().download
    return getattr(download, "__wrapped__", download)


def set_dataset_source(task: Any, path: str, name: str | None) -> None:
    """What ``ConfigurableTask.download`` passes to ``datasets.load_dataset`` as path and config name."""
    task.DATASET_PATH = path
    task.DATASET_NAME = name


# ---- output folders (report/results.py) ----------------------------------------------------------------
# lmms-eval writes ``<output_path>/<model_name_sanitized>/<date_id>_results.json`` (``date_id`` is
# ``%Y%m%d_%H%M%S``) and, with --log_samples, ``<date_id>_samples_<task>.jsonl`` beside it
# (``loggers.evaluation_tracker.EvaluationTracker``); aggregated metrics sit in ``results[task]["<metric>,<filter>"]``.

RESULTS_SUFFIX = "_results.json"
METRIC_FILTER_SUFFIX = ",none"  # our tasks' (and lmms-eval's own OCR tasks') filter


def results_stamp(results_path: Path) -> str:
    """The ``date_id`` of a results file: sorts chronologically, names its samples files."""
    return results_path.name[: -len(RESULTS_SUFFIX)]


def samples_file(results_path: Path, task: str) -> Path:
    return results_path.with_name(f"{results_stamp(results_path)}_samples_{task}.jsonl")
