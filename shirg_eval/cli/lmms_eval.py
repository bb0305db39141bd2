"""``lmms_eval``: lmms-eval's own CLI with this project's tasks included and an honest exit code.

- ``tasks/`` (installed as ``shirg_eval.tasks``) is added to ``--include_path``, after any user path.
- Exits nonzero when the evaluation failed (task not found, model error, no results written); lmms-eval
  0.7.3 itself logs the error and exits 0. Missing task data (no ``SHIRG_*_PATH``, no hub) prints only the
  message that says what to set, without lmms-eval's traceback.
- With ``--output_path``, answers are journaled in ``OUTPUT/.shirg_journal``: rerunning an interrupted
  command reuses finished samples (with their original timings, marked ``resumed``).
- With ``--output_path``, per-sample efficiency on lmms-eval's own tasks (no ``shirg_uid``) is written beside
  the samples log as ``<date_id>_shirg_efficiency_<task>.jsonl`` (see :mod:`shirg_eval.harness.side_efficiency`).
- An unknown ``--model`` stops at once with one line suggesting the closest registered SHIRG variant (instead
  of lmms-eval's list of every model it knows).
- ``lmms_eval --help`` and lmms-eval's subcommands (``tasks``, ``models``, ...) pass through unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..data.task_yaml import tasks_dir
from ..harness import compat
from ..harness.launch import (
    model_args_error,
    new_results,
    register_models,
    unknown_model_message,
    watch_failures,
)
from ..harness.side_efficiency import SIDE_DIR_ENV, SIDE_DIR_NAME, place_beside_results
from ..tasks.data_source import DataUnavailableError

SUBCOMMANDS = {"tasks", "models", "ui", "serve", "power", "version", "tui", "mcp"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help"):
        from lmms_eval.cli.dispatch import main as lmms_main

        sys.argv = ["lmms_eval", *argv]
        lmms_main()
        return 0
    if argv[0] == "eval":
        argv = argv[1:]

    register_models()
    sys.argv = ["lmms_eval", *argv]
    args = compat.parse_eval_args()
    user_paths = args.include_path if isinstance(args.include_path, list) else [args.include_path]
    args.include_path = [p for p in user_paths if p] + [str(tasks_dir().resolve())]
    listing = args.tasks in ("list", "list_groups", "list_tags", "list_subtasks")
    if not listing and not getattr(args, "config", None):  # a --config YAML names its models itself
        unknown = unknown_model_message(args.model)
        if unknown:
            print(f"lmms_eval: error: {unknown}", file=sys.stderr)
            return 2
        bad_args = model_args_error(args.model, args.model_args)
        if bad_args:
            print(f"lmms_eval: error: {bad_args}", file=sys.stderr)
            return 2
    if args.output_path and "SHIRG_JOURNAL_DIR" not in os.environ:
        # Answers are journaled beside the results, so rerunning an interrupted command resumes it.
        os.environ["SHIRG_JOURNAL_DIR"] = str(Path(args.output_path) / ".shirg_journal")
    if args.output_path and SIDE_DIR_ENV not in os.environ:
        os.environ[SIDE_DIR_ENV] = str(Path(args.output_path) / SIDE_DIR_NAME)
    if not listing and os.environ.get("SHIRG_JOURNAL_DIR"):
        # One writer per output folder and rank, checked before lmms-eval builds tasks or loads the model (the
        # model takes the same lock again, shared within this process).
        from ..harness.journal import AnswerJournal
        from ..run_lock import RunLockedError

        try:
            AnswerJournal.writer_lock(os.environ["SHIRG_JOURNAL_DIR"], int(os.environ.get("RANK", "0")))
        except RunLockedError as err:
            print(f"lmms_eval: error: {err}", file=sys.stderr)
            return 2
    if args.output_path and "SHIRG_PICTURE_DIR" not in os.environ:
        os.environ["SHIRG_PICTURE_DIR"] = str(Path(args.output_path))

    failures: list[str] = []
    watch_failures(failures, quiet=(DataUnavailableError,))
    start = time.time()
    try:
        compat.cli_evaluate(args)
    except SystemExit as err:
        if listing and not failures:
            return 0
        if err.code not in (None, 0):
            return int(err.code) if isinstance(err.code, int) else 1
    if args.output_path and int(os.environ.get("RANK", "0")) == 0 and os.environ.get(SIDE_DIR_ENV):
        place_beside_results(os.environ[SIDE_DIR_ENV], new_results(args.output_path, start))
    return 0 if listing else _verdict(args, failures, start)


def _verdict(args, errors: list[str], start: float) -> int:
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        return 0
    if errors:
        print(f"lmms_eval: evaluation failed: {errors[0]}", file=sys.stderr)
        return 1
    if args.output_path and not new_results(args.output_path, start):
        print(f"lmms_eval: evaluation failed: no results.json was written under {args.output_path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
