"""``lmms_eval``: lmms-eval's own CLI with this project's tasks included and an honest exit code.

- ``tasks/`` (installed as ``shirg_eval.tasks``) is added to ``--include_path``, after any user path.
- Exits nonzero when the evaluation failed (task not found, model error, no results written); lmms-eval
  0.7.3 itself logs the error and exits 0. Missing task data (no ``SHIRG_*_PATH``, no hub) prints only the
  message that says what to set, without lmms-eval's traceback.
- With ``--output_path``, answers are journaled in ``OUTPUT/.shirg_journal``: rerunning an interrupted
  command reuses finished samples (with their original timings, marked ``resumed``).
- With ``--output_path``, per-sample efficiency on lmms-eval's own tasks (no ``shirg_uid``) is written beside
  the samples log as ``<date_id>_shirg_efficiency_<task>.jsonl`` (see :mod:`.side_efficiency`).
- An unknown ``--model`` stops at once with one line suggesting the closest registered SHIRG variant (instead
  of lmms-eval's list of every model it knows).
- ``lmms_eval --help`` and lmms-eval's subcommands (``tasks``, ``models``, ...) pass through unchanged.
"""

from __future__ import annotations

import difflib
import glob
import os
import sys
import time
from pathlib import Path

from . import compat
from .side_efficiency import SIDE_DIR_ENV, SIDE_DIR_NAME, place_beside_results

SUBCOMMANDS = {"tasks", "models", "ui", "serve", "power", "version", "tui", "mcp"}


def tasks_dir() -> str:
    import shirg_eval.tasks

    return str(Path(shirg_eval.tasks.__file__).resolve().parent)


def _new_results(output_path: str | None, since: float) -> list[str]:
    if not output_path:
        return []
    found = glob.glob(os.path.join(output_path, "**", f"*{compat.RESULTS_SUFFIX}"), recursive=True)
    return [f for f in found if os.path.getmtime(f) >= since - 1]


def unknown_model_message(name: str) -> str | None:
    """None if lmms-eval resolves ``name``; else one line naming the closest registered SHIRG variant.

    The names come from lmms-eval's model registry (this package's entry-point manifests included), so new
    variants are suggested as soon as they are registered.
    """
    from lmms_eval.models import MODEL_REGISTRY_V2

    known = MODEL_REGISTRY_V2.list_model_names()
    if name in known:
        return None
    ours = [m for m in known if (MODEL_REGISTRY_V2.get_manifest(m).simple_class_path or "").startswith("shirg_eval.")]
    close = difflib.get_close_matches(name, ours, n=1, cutoff=0.5) or difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (f"unknown model {name!r}.{hint} SHIRG variants: {', '.join(ours)}; `lmms_eval models` lists every "
            "model lmms-eval knows")


def model_args_error(model: str, model_args: str | dict | None) -> str | None:
    """Why ``--model_args`` cannot build a SHIRG variant (None if they can, or the model is not ours).

    Checked before lmms-eval builds the tasks and imports the model (25-40 s), with lmms-eval's own parser,
    so a typo is reported in seconds; the model's constructor checks the same again.
    """
    from lmms_eval.utils import simple_parse_args_string

    from .lmms_model import MODEL_CLASSES
    from .model_args import parse_model_args

    if model not in MODEL_CLASSES:
        return None
    try:
        raw = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    except (ValueError, IndexError) as err:  # e.g. "k=144,/etc" (no '='), or "k=²" (isnumeric, not int)
        return (f"--model {model}: --model_args {model_args!r} is not key=value,... with plain values "
                f"({type(err).__name__}: {err})")
    try:
        parse_model_args(model, raw)
    except ValueError as err:
        return str(err)
    return None


def _watch_failures(failures: list[str]) -> None:
    """Record why lmms-eval's per-config run failed; it only logs the error and carries on to exit 0."""
    from shirg_eval.tasks.data_source import DataUnavailableError

    def wrap(original):  # noqa: ANN001, ANN202 - lmms-eval's cli_evaluate_single
        def watched(args):  # noqa: ANN001, ANN202
            try:
                results, samples = original(args)
            except DataUnavailableError as err:
                # The message says what to set; lmms-eval would print a traceback before it.
                failures.append(str(err))
                return None, None
            except SystemExit as err:  # e.g. no --tasks given: lmms-eval calls sys.exit() with status 0
                failures.append(f"lmms-eval stopped early (exit status {err.code!r}); see the log above")
                raise
            except BaseException as err:
                failures.append(f"{type(err).__name__}: {err}")
                raise
            if results is None and int(os.environ.get("RANK", "0")) == 0:
                failures.append("lmms-eval returned no results")
            return results, samples

        return watched

    compat.wrap_cli_evaluate_single(wrap)


def _register_models() -> None:
    """Register the SHIRG models directly, as the ``lmms_eval.models`` entry point does for an installed package:
    the same manifests, so a source tree or a ``pip install --target`` copy without entry points resolves them too."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    from .registration import manifests

    for manifest in manifests():
        MODEL_REGISTRY_V2.register_manifest(manifest, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help"):
        from lmms_eval.cli.dispatch import main as lmms_main

        sys.argv = ["lmms_eval", *argv]
        lmms_main()
        return 0
    if argv[0] == "eval":
        argv = argv[1:]

    _register_models()
    sys.argv = ["lmms_eval", *argv]
    args = compat.parse_eval_args()
    user_paths = args.include_path if isinstance(args.include_path, list) else [args.include_path]
    args.include_path = [p for p in user_paths if p] + [tasks_dir()]
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
        from shirg_eval.run_lock import RunLockedError

        from .journal import AnswerJournal

        try:
            AnswerJournal.writer_lock(os.environ["SHIRG_JOURNAL_DIR"], int(os.environ.get("RANK", "0")))
        except RunLockedError as err:
            print(f"lmms_eval: error: {err}", file=sys.stderr)
            return 2
    if args.output_path and "SHIRG_PICTURE_DIR" not in os.environ:
        os.environ["SHIRG_PICTURE_DIR"] = str(Path(args.output_path))

    failures: list[str] = []
    _watch_failures(failures)
    start = time.time()
    try:
        compat.cli_evaluate(args)
    except SystemExit as err:
        if listing and not failures:
            return 0
        if err.code not in (None, 0):
            return int(err.code) if isinstance(err.code, int) else 1
    if args.output_path and int(os.environ.get("RANK", "0")) == 0 and os.environ.get(SIDE_DIR_ENV):
        place_beside_results(os.environ[SIDE_DIR_ENV], _new_results(args.output_path, start))
    return 0 if listing else _verdict(args, failures, start)


def _verdict(args, errors: list[str], start: float) -> int:
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        return 0
    if errors:
        print(f"lmms_eval: evaluation failed: {errors[0]}", file=sys.stderr)
        return 1
    if args.output_path and not _new_results(args.output_path, start):
        print(f"lmms_eval: evaluation failed: no results.json was written under {args.output_path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
