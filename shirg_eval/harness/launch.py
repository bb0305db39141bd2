"""The ``lmms_eval`` command's checks and watchers around lmms-eval's own CLI (the command is
:mod:`shirg_eval.cli.lmms_eval`): the SHIRG models registered, an unknown ``--model`` or bad ``--model_args``
caught before lmms-eval builds tasks, and lmms-eval's per-run failures recorded (it logs them and exits 0).
"""

from __future__ import annotations

import difflib
import glob
import os

from . import compat


def new_results(output_path: str | None, since: float) -> list[str]:
    """results.json files lmms-eval wrote under ``output_path`` since ``since`` (a ``time.time()``)."""
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


def watch_failures(failures: list[str], quiet: tuple[type[BaseException], ...] = ()) -> None:
    """Record why lmms-eval's per-config run failed; it only logs the error and carries on to exit 0. Errors of a
    ``quiet`` type end the run with their message alone (it says what to set), without lmms-eval's traceback."""

    def wrap(original):  # noqa: ANN001, ANN202 - lmms-eval's cli_evaluate_single
        def watched(args):  # noqa: ANN001, ANN202
            try:
                results, samples = original(args)
            except quiet as err:
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


def register_models() -> None:
    """Register the SHIRG models directly, as the ``lmms_eval.models`` entry point does for an installed package:
    the same manifests, so a source tree or a ``pip install --target`` copy without entry points resolves them too."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    from .registration import manifests

    for manifest in manifests():
        MODEL_REGISTRY_V2.register_manifest(manifest, overwrite=True)
