"""What a sweep YAML (or ``shirg-sweep --model_args``) may contain, checked before any cell runs.

A cell's name becomes a folder under ``output_root`` and its settings become one ``--model_args k=v,...`` string,
so both are inputs to paths and to a parser:

- **cell names** are one path component of ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (at most 128 characters): no ``/``,
  no ``..``, no absolute path, nothing hidden, so a cell can only ever write ``<output_root>/<name>``;
  ``plots`` and ``leaderboard.md`` (any case) are where the sweep writes its own outputs;
- **model_args keys** match ``[A-Za-z_][A-Za-z0-9_]*``; **values** are scalars (string, number, true/false)
  without ``,`` ``"`` ``'`` ``{`` ``}`` ``[`` ``]``, control characters (line breaks, NUL) or surrounding
  spaces: lmms-eval 0.7.3 splits ``--model_args`` on commas, keeps quotes inside values (``k="144,x"`` gives
  ``"144,x"``), lets an unmatched ``'`` swallow the arguments after it and strips spaces, so no quoting could
  carry those through; and a value it would crash on (a numeral such as ``²`` that ``str.isnumeric`` accepts
  and ``int`` does not) is refused too. ``lora`` paths are model_args values;
- the **results folder** lmms-eval derives from the model_args (the value of ``pretrained=`` and the like, as
  ``GeneralConfigTracker`` reads it) must not be ``.`` or ``..``, or the results would land beside the cell;
- **task and model names** match ``[A-Za-z0-9_][A-Za-z0-9_.-]*`` and are not YAML files (lmms-eval would load
  one as a task config);
- **extra_args** come from an allow list of lmms-eval flags that neither write nor read elsewhere (argparse
  abbreviations included, nothing else): a cell's output stays in its folder.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

CELL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ARG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TASK_OR_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
UNSAFE_VALUE_CHARS = frozenset(",\"'{}[]")
RESERVED_NAMES = frozenset({"plots", "leaderboard.md"})  # what shirg-sweep writes in output_root itself
# lmms-eval flags a cell may add; everything else (--output_path, --config, --use_cache, --include_path,
# --hf_hub_log_args, --wandb_args, ...) would write, read or upload outside the cell, or override the cell's own.
EXTRA_FLAGS = frozenset({"--seed", "--gen_kwargs", "--verbosity", "--batch_size", "--max_batch_size", "--device",
                         "--num_fewshot", "--offset", "--system_instruction", "--apply_chat_template",
                         "--fewshot_as_multiturn", "--timezone", "--predict_only", "--process_with_media",
                         "--force_simple", "--log_samples_suffix", "--check_integrity", "--write_out",
                         "--show_config"})
# Where lmms-eval's EvaluationTracker looks for the results folder's name, in its order.
_MODEL_NAME_KEYS = ("peft=", "delta=", "pretrained=", "model=", "model_version=", "model_name=", "model_id=", "path=",
                    "engine=")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class SweepInputError(ValueError):
    """A sweep input that could escape the output root or inject command-line arguments."""


def check_cell_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not CELL_NAME.fullmatch(name):
        raise SweepInputError(
            f"{where}: cell name {name!r} is not a safe folder name; use 1-128 of A-Z a-z 0-9 _ . - starting with a "
            "letter or digit (no '/', no '..', not absolute): each cell writes <output_root>/<name>")
    if name.casefold() in RESERVED_NAMES:
        raise SweepInputError(f"{where}: cell name {name!r} is where the sweep writes its leaderboard; rename the "
                              "cell")
    return name


def check_name(kind: str, name: Any, where: str) -> str:
    """A task or model name (joined with commas on the command line, so one name each)."""
    if not isinstance(name, str) or not TASK_OR_MODEL.fullmatch(name) or name.lower().endswith((".yaml", ".yml")):
        raise SweepInputError(f"{where}: {kind} name {name!r} is not valid; use A-Z a-z 0-9 _ . - (one name per "
                              "list entry, not a file)")
    return name


def _control_chars(text: str) -> list[str]:
    return sorted({c for c in text if unicodedata.category(c) == "Cc"})


def check_value(key: str, value: Any, where: str) -> None:
    if isinstance(value, (list, tuple, dict, set)):
        raise SweepInputError(f"{where}: model_args {key} must be a single value (string, number or true/false), "
                              f"got {type(value).__name__} {value!r}")
    if value is None or isinstance(value, (bool, int, float)):
        return
    text = str(value)
    bad = sorted(UNSAFE_VALUE_CHARS & set(text)) + _control_chars(text)
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise SweepInputError(
            f"{where}: model_args {key}={text!r} contains {shown}, which lmms-eval's --model_args parser would split "
            "on or mangle (quoting does not help); rename the path or value so it has none of , \" ' { } [ ] or "
            "control characters")
    if text != text.strip():
        raise SweepInputError(f"{where}: model_args {key}={text!r} has surrounding spaces, which lmms-eval strips; "
                              "remove them")
    if text.isnumeric() and not text.isascii():
        raise SweepInputError(f"{where}: model_args {key}={text!r} is a non-ASCII numeral, on which lmms-eval's "
                              "parser fails (int() rejects it); write it in ASCII digits")


def check_model_args(args: Mapping[str, Any], where: str) -> None:
    for key, value in args.items():
        if not isinstance(key, str) or not ARG_KEY.fullmatch(key):
            raise SweepInputError(f"{where}: model_args key {key!r} is not a valid name ([A-Za-z_][A-Za-z0-9_]*)")
        check_value(key, value, where)


def check_results_folder(model_args: str, where: str) -> None:
    """lmms-eval writes results under ``<output_path>/<name>``, the name read from the model_args string (text after
    the first key of :data:`_MODEL_NAME_KEYS` found anywhere in it, up to a comma; its last two path parts, with
    separators replaced): ``pretrained=..`` would put them beside the cell's folder."""
    for prefix in _MODEL_NAME_KEYS:
        if prefix in model_args:
            value = model_args.split(prefix, 1)[1].split(",")[0]
            folder = "/".join(value.split("/")[-2:]) if "/" in value else value
            if re.sub(r"[\"<>:/\\|?*\[\]]+", "__", folder) in (".", ".."):
                raise SweepInputError(f"{where}: model_args {prefix}{value} would make lmms-eval write the results "
                                      f"into {folder!r} of the cell folder, outside it; name the checkpoint by a "
                                      "path that does not end in '.' or '..'")
            return


def check_extra_args(extra: Iterable[Any], where: str) -> None:
    for arg in extra:
        text = str(arg)
        if _control_chars(text):
            raise SweepInputError(f"{where}: extra_args entry {text!r} contains control characters")
        if not text.startswith("-") or _NUMBER.fullmatch(text):
            continue  # the value of the flag before it
        flag = text.split("=", 1)[0]
        # argparse accepts any unambiguous prefix of a flag: allow only whole names from the list.
        if flag not in EXTRA_FLAGS:
            raise SweepInputError(f"{where}: extra_args may not pass {flag}; allowed: {', '.join(sorted(EXTRA_FLAGS))}"
                                  " (model, model_args, tasks and limit are cell keys; output goes to output_root)")


def check_limit(limit: Any, where: str) -> None:
    # lmms-eval reads --limit N as N documents, and a number below 1 as a fraction of each task.
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
        raise SweepInputError(f"{where}: limit must be a number > 0 (documents, or a fraction below 1) or null, got "
                              f"{limit!r}")
