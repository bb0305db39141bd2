"""Sweep inputs cannot escape the output root or inject lmms-eval arguments (README, "Reliability").

Each refusal happens before any cell runs or any folder is touched; the property test drives the real sweep runner
(with a stand-in lmms_eval that records its argv) over arbitrary cell names and values.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shirg_eval.cli import sweep as sweep_cli
from shirg_eval.report import sweep as sw
from shirg_eval.report.sweep_safety import SweepInputError

# Records its argv in <output_path>/argv.json: what a cell wrote, and where, is all the test needs.
FAKE = """
import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_path") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "argv.json").write_text(json.dumps(args))
"""


def _write(root: Path, spec: dict) -> Path:
    cfg = root / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"tasks": ["chartqa_200"], "output_root": str(root / "out"), **spec}))
    return cfg


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _run(root: Path, cfg: Path, *extra: str) -> int:
    fake = root / "fake_lmms_eval.py"
    fake.write_text(FAKE)
    return sweep_cli.main([str(cfg), "--lmms-eval-cmd", shlex.join([sys.executable, str(fake)]), "--no-leaderboard",
                    *extra])


@pytest.mark.parametrize("name", ["..", ".", "../../escaped_cell", "/tmp/absolute_cell", "a/b", ".hidden",
                                  "x" * 129, "plots", "leaderboard.md", "tab\tname", "new\nline"])
def test_cell_names_that_are_not_one_safe_folder_are_refused_before_anything_runs(tmp_path, name, capsys):
    (tmp_path / "users_file.txt").write_text("keep me")
    cfg = _write(tmp_path, {"cells": [{"name": name, "model": "lavida"}]})
    before = _snapshot(tmp_path)
    assert _run(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert "is not a safe folder name" in err or "rename the cell" in err
    # Nothing moved into .previous/, no output root, the user's file where it was.
    after = _snapshot(tmp_path)
    assert set(after) - set(before) == {"fake_lmms_eval.py"} and (tmp_path / "users_file.txt").read_text() == "keep me"


@pytest.mark.parametrize(("model_args", "lora", "message"), [
    ({"k": "144,lora=/etc"}, None, r"model_args k='144,lora=/etc' contains ','"),
    ({"k": '"144,x"'}, None, r"contains '\"' ','"),
    ({"pretrained": "/x/y's"}, None, r"contains \"'\""),
    ({"selector": "{a}"}, None, r"contains '\{' '\}'"),
    ({"selector": "[a]"}, None, r"contains '\[' '\]'"),
    ({"selector": "a\nb"}, None, r"contains '\\n'"),
    ({"k-x": 1}, None, r"key 'k-x' is not a valid name"),
    ({"1k": 1}, None, r"key '1k' is not a valid name"),
    ({"k": [1, 2]}, None, r"model_args k must be a single value"),
    ({}, "/adapters/a,b", r"model_args lora='/adapters/a,b' contains ','"),
])
def test_model_args_that_would_inject_arguments_name_the_cell_and_key(tmp_path, model_args, lora, message):
    cfg = _write(tmp_path, {"cells": [{"name": "cell1", "model": "shirg_fixed", "model_args": model_args,
                                       "lora": lora}]})
    with pytest.raises(SweepInputError, match=r"cell 'cell1': .*" + message):
        sw.load_sweep(cfg)


def test_defaults_tasks_models_and_extra_args_are_checked_too(tmp_path):
    cases = [
        ({"defaults": {"model_args": {"k": "1,x=2"}}, "cells": [{"model": "lavida"}]}, r"defaults: model_args k="),
        ({"tasks": ["chartqa_200,docvqa_200"], "cells": [{"model": "lavida"}]}, r"task name 'chartqa_200,docvqa"),
        ({"cells": [{"model": "lavida,lora=/x"}]}, r"not a safe folder name|model name"),
        ({"cells": [{"name": "c", "model": "lavida", "tasks": ["a b"]}]}, r"cell 'c': tasks: task name 'a b'"),
        ({"cells": [{"name": "c", "model": "lavida", "limit": -3}]}, r"limit must be a number > 0"),
        ({"cells": [{"name": "a", "model": "lavida"}, {"name": "A", "model": "pool_k"}]},
         r"duplicate cell name 'A' \(the folder of 'a' on a case-insensitive filesystem\)"),
        ({"cells": [{"name": "Plots", "model": "lavida"}]}, r"where the sweep writes its leaderboard"),
        ({"cells": [{"name": 10, "model": "lavida"}]}, r"cell name 10 is a int, not text: quote it"),
        ({"cells": [{"name": True, "model": "lavida"}]}, r"cell name True is a bool, not text"),
        ({"cells": [{"name": "c", "model": "lavida", "model_args": {"pretrained": "a\x00b"}}]}, r"contains '\\x00'"),
        ({"cells": [{"name": "c", "model": "lavida", "model_args": {"pretrained": ".."}}]},
         r"pretrained=\.\. would make lmms-eval write the results into '\.\.'"),
        ({"cells": [{"name": "c", "model": "lavida", "lora": "/x/peft=.."}]}, r"peft=\.\. would make lmms-eval"),
        ({"cells": [{"name": "c", "model": "lavida", "model_args": {"k": "\u00b2"}}]}, r"non-ASCII numeral"),
        ({"cells": [{"name": "c", "model": "lavida", "model_args": {"pretrained": "/x "}}]}, r"surrounding spaces"),
        ({"tasks": 5, "cells": [{"model": "lavida"}]}, r"tasks \(or a comma-separated string\) must be a list"),
        ({"tasks": "chartqa_200,a b", "cells": [{"model": "lavida"}]}, r"task name 'a b' is not valid"),
        ({"tasks": ["my_task.yaml"], "cells": [{"model": "lavida"}]}, r"task name 'my_task.yaml' is not valid"),
        ({"output_root": 123, "cells": [{"model": "lavida"}]}, r"output_root must be a path"),
        ({"cells": [{"name": "c", "model": "lavida", "model_args": [1]}]}, r"model_args must be a mapping"),
        ({"cells": [{"name": "c", "model": "lavida", "extra_args": "--seed"}]}, r"extra_args must be a list"),
        ({"cells": [{"name": "c"}]}, r"cell 'c' has no model"),
        ({"grid": [{"name": "x{kk}", "model": "lavida", "k": [1]}]}, r"name template 'x\{kk\}' .* fields: \['k'\]"),
        ({"grid": [{"name": "x{0}", "model": "lavida", "k": [1]}]}, r"name template 'x\{0\}'"),
    ]
    # argparse takes any unambiguous prefix of a flag: only whole names from the allow list pass.
    for flag in ("--output_path=/tmp/elsewhere", "--output", "--lim", "--model_a", "--task", "--config", "-c",
                 "--use_cache", "--include_path", "--hf_hub_log_args", "--wandb_args", "--see"):
        cases.append(({"cells": [{"name": "c", "model": "lavida", "extra_args": [flag, "x"]}]},
                      rf"extra_args may not pass {flag.split('=')[0]}; allowed:"))
    for spec, message in cases:
        with pytest.raises(SweepInputError, match=message):
            sw.load_sweep(_write(tmp_path, spec))


def test_allowed_extra_args_pass_through(tmp_path):
    cfg = _write(tmp_path, {"cells": [{"name": "c", "model": "lavida",
                                       "extra_args": ["--seed", "-3", "--gen_kwargs=temperature=0", "--verbosity",
                                                      "DEBUG"]}]})
    cell = sw.load_sweep(cfg).cells[0]
    assert sw.cell_command(cell, tmp_path / "out" / "c", ["lmms_eval"])[-5:] == cell.extra_args


def test_command_line_limit_is_checked(tmp_path, capsys):
    cfg = _write(tmp_path, {"cells": [{"name": "c", "model": "lavida"}]})
    assert _run(tmp_path, cfg, "--limit", "-1") == 2 and "limit must be a number > 0" in capsys.readouterr().err
    assert _run(tmp_path, cfg, "--limit", "3", "--dry-run") == 0 and "--limit 3" in capsys.readouterr().out
    assert _run(tmp_path, cfg, "--limit", "0.5", "--dry-run") == 0 and "--limit 0.5" in capsys.readouterr().out


def test_command_line_model_args_are_checked(tmp_path, capsys):
    cfg = _write(tmp_path, {"cells": [{"name": "c", "model": "lavida"}]})
    assert sw.parse_overrides("k=144,lora=/etc") == {"k": "144", "lora": "/etc"}  # two arguments, as written
    for bad, message in (("k=144,/etc", "'/etc' is not key=value"), ("k='1", "contains \"'\""),
                         ("k=[1]", "contains '['"), ("bad key=1", "key 'bad key' is not a valid name")):
        assert _run(tmp_path, cfg, "--model_args", bad) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_hand_built_cell_cannot_leave_the_output_root(tmp_path):
    sweep = sw.Sweep(tasks=["chartqa_200"], output_root=tmp_path / "out", cells=[])
    with pytest.raises(SweepInputError):
        sw.cell_dir(sweep, sw.Cell(name="../x", model="lavida", model_args={}, tasks=["chartqa_200"]))


# Arbitrary text, mixed with text built from the dangerous pieces, so that both branches (refused, and run) are
# exercised often: about half the examples pass the checks and run.
PIECES = st.sampled_from(["..", ".", "/", ",", "=", "'", '"', "{", "}", "[", "]", "\n", "\x00", " ", "\u00b2", "a",
                          "k", "0", "-", "_", "pretrained=", "peft=", "lora=/etc", "~", "\u00e9"])
TEXT = st.one_of(st.text(max_size=12), st.lists(PIECES, max_size=6).map("".join),
                 st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True))
NAMES = st.one_of(TEXT, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True))
KEYS = st.one_of(st.text(min_size=1, max_size=8), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
                 st.sampled_from(["pretrained", "lora", "k", "path", "model"]))
VALUES = st.one_of(TEXT, st.integers(-5, 5000), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


def _results_folder(output_path: Path, model_args: str) -> Path:
    """Where lmms-eval 0.7.3's EvaluationTracker puts results.json and the samples: its own functions, called."""
    from lmms_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lmms_eval.utils import sanitize_model_name

    return output_path / sanitize_model_name(GeneralConfigTracker._get_model_name(model_args))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, key=KEYS, value=VALUES, lora=st.one_of(st.none(), TEXT))
def test_any_name_and_value_is_refused_or_stays_inside_the_output_root(name, key, value, lora):
    """For any cell name, model_args key/value and lora path: the sweep refuses before writing anything, or every
    file it (and the cell's lmms_eval) writes is inside <output_root>/<name>, lmms-eval would put its results there
    too, and lmms-eval's own parser reads back exactly the arguments the cell declared (nothing injected, nothing
    swallowed)."""
    from lmms_eval.utils import handle_arg_string, simple_parse_args_string

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "users_file.txt").write_text("keep me")
        try:
            cfg = _write(root, {"cells": [{"name": name, "model": "shirg_fixed", "model_args": {key: value},
                                           "lora": lora}]})
        except yaml.YAMLError:
            return  # not representable as YAML: nothing to run
        before = _snapshot(root)
        rc = _run(root, cfg)
        new = set(_snapshot(root)) - set(before) - {"fake_lmms_eval.py"}
        assert (root / "users_file.txt").read_text() == "keep me"
        if rc == 2:
            assert new == set(), f"refused, but wrote {sorted(new)}"
            return
        name = name or "shirg_fixed"  # an empty name falls back to the model's
        cell_folder = (root / "out" / name).resolve()
        for rel in new - {"out"}:
            path = (root / rel).resolve()
            assert path == cell_folder or cell_folder in path.parents, f"{path} is outside {cell_folder}"
        argv = json.loads((root / "out" / name / "argv.json").read_text())
        output_path = Path(argv[argv.index("--output_path") + 1]).resolve()
        model_args = argv[argv.index("--model_args") + 1]
        results = _results_folder(output_path, model_args).resolve()
        assert results == cell_folder or cell_folder in results.parents, f"lmms-eval would write {results}"
        parsed = simple_parse_args_string(model_args)
        declared = {key: value, **({"lora": lora} if lora else {})}  # an empty lora is no adapter
        expected = {k: handle_arg_string(sw.fmt_value(v)) for k, v in declared.items() if v is not None}
        assert parsed == expected
