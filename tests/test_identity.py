"""A run's identity (records.RunIdentity) and the leaderboard's row key: one row per computation.

``""``, ``k=768`` and ``k=768,seed=0,prefix_cache=true`` are the same computation for shirg_fixed (its preset's
K is 768; seed 0 and the prefix cache are ModelArgs' defaults) and must give one row; ``k=576`` is another.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from lmms_eval.utils import simple_parse_args_string

from shirg_eval.harness.identity import legacy_identity, normalised_settings, run_identity, setting_names
from shirg_eval.harness.model_args import ModelArgs, parse_model_args
from shirg_eval.records import EfficiencyRecord, RunIdentity, identity_role
from shirg_eval.report import table
from shirg_eval.report.results import load_task_runs
from shirg_eval.report.rows import RowKey, row_labels

sys.path.insert(0, str(Path(__file__).parent / "data"))
from lmms_fixture import sample_row, write_run  # noqa: E402

DATA = Path(__file__).parent / "data" / "results" / "roadmap"
EQUIVALENT = ("", "k=768", "k=768,seed=0,prefix_cache=true")


def _identity(variant: str, model_args: str) -> RunIdentity:
    args = parse_model_args(variant, simple_parse_args_string(model_args))
    return run_identity(variant, args, base_sha256="ab" * 32, lora=None, lora_sha256=None, dtype="float32",
                        attn_implementation="sdpa")


def _write(out: Path, variant: str, model_args: str, identity: RunIdentity | None) -> None:
    meta = {"variant": variant, "dtype": "float32"}
    if identity is not None:
        meta["identity"] = identity.to_json()
    eff = {"latency_ms": 10.0, "peak_mem_gb": 1.0, "peak_mem_kind": "cpu_peak_rss", "visual_tokens": 768,
           "warmup": False}
    rows = [sample_row("chartqa_200", i, f"chartqa-{i:03d}", "1", "1" if i % 2 else "0", float(i % 2), eff, meta)
            for i in range(4)]
    write_run(out, variant, f"pretrained=/m,{model_args}".rstrip(","), "20250101_120000", {"chartqa_200": rows},
              limit=4)


def test_equivalent_argument_strings_are_one_identity() -> None:
    keys = {RowKey.of(_identity("shirg_fixed", margs)) for margs in EQUIVALENT}
    assert len(keys) == 1 and next(iter(keys)).label() == "shirg_fixed"
    other = RowKey.of(_identity("shirg_fixed", "k=576"))
    assert other not in keys and other.label() == "shirg_fixed[k=576]"  # only what differs from the defaults
    assert RowKey.of(_identity("shirg_fixed", "coverage=false")).label() == "shirg_fixed[coverage=false]"


@pytest.mark.parametrize("recorded", [True, False], ids=["identity-record", "old-format"])
def test_equivalent_runs_are_one_leaderboard_row(tmp_path: Path, recorded: bool) -> None:
    for i, margs in enumerate((*EQUIVALENT, "k=576")):
        _write(tmp_path / f"run{i}", "shirg_fixed", margs, _identity("shirg_fixed", margs) if recorded else None)
    board = table.build_leaderboard(load_task_runs([tmp_path], log=open("/dev/null", "w")), n_boot=50)
    assert sorted(board.raw["label"]) == ["shirg_fixed", "shirg_fixed[k=576]"]


def test_infrastructure_is_marked_once_on_the_model_args() -> None:
    marked = {f.name: identity_role(f.metadata) for f in fields(ModelArgs)}
    assert {n for n, role in marked.items() if role == "infrastructure"} == {
        "device", "journal", "pictures", "allow_failures", "allow_base_mismatch"}
    assert {n for n, role in marked.items() if role == "resolved"} == {
        "pretrained", "lora", "dtype", "attn_implementation"}
    settings = normalised_settings("shirg_fixed", ModelArgs())
    assert set(settings) <= set(setting_names()) and {"seed", "prefix_cache", "k", "batch_size"} <= set(settings)
    assert settings["k"] == 768 and settings["selector"] == "shirg_fixed" and settings["resolution"] == 672
    assert "threshold" not in settings and "compile_bucket" not in settings  # they do not apply by default


def test_infrastructure_arguments_do_not_split_rows() -> None:
    plain = _identity("shirg_fixed", "k=512")
    busy = _identity("shirg_fixed", "k=512,device=cpu,journal=/j,pictures=0,allow_failures=true")
    assert RowKey.of(plain) == RowKey.of(busy)


def test_another_selector_drops_the_presets_parameters() -> None:
    """VisualPath gives another selector none of the preset's parameters: the identity says the same."""
    settings = normalised_settings("shirg_fixed", ModelArgs(selector="pool_k"))
    assert settings["selector"] == "pool_k" and settings["k"] == 768  # pool_k's own default, not the preset's
    assert settings["coverage"] is None


def test_identity_round_trips_and_refuses_unknown_keys() -> None:
    identity = _identity("pool_k", "k=576,decoding=threshold,threshold=0.8")
    data = json.loads(json.dumps(identity.to_json()))
    assert RunIdentity.from_json(data) == identity
    assert identity.decoding["threshold"] == 0.8 and identity.kv_dtype == "auto" and identity.batch_size == 1
    with pytest.raises(ValueError, match="unknown keys"):
        RunIdentity.from_json({**data, "lora_path": "x"})
    record = EfficiencyRecord(1.0, 0.5, 0.5, 1.0, "cpu_peak_rss", 768, meta={"a": 1})
    assert EfficiencyRecord.from_json(record.to_json()) == record


def test_legacy_identity_from_run_meta_and_model_args() -> None:
    """Results from before identity records: model_args as written + the run_meta's resolved values."""
    meta = {"variant": "shirg_fixed", "dtype": "bfloat16", "lora": {"path": "/runs/a/checkpoint-10", "sha256": "f0"},
            "batch_size": 8}
    identity = legacy_identity("shirg_fixed", {"pretrained": "/m", "k": "768", "lora": "/runs/a", "device": "cuda",
                                               "trust_remote_code": "true"}, meta)
    key = RowKey.of(identity)
    assert (key.lora, key.lora_sha256, key.settings) == ("/runs/a/checkpoint-10", "f0", "")
    assert key.base == "pretrained=/m,dtype=bfloat16,batch_size=8"


def test_old_format_folder_builds_a_leaderboard(tmp_path: Path) -> None:
    """The checked-in fixtures have no identity record: rows are derived from run_meta + model_args."""
    runs = tmp_path / "runs"
    shutil.copytree(DATA, runs)
    board = table.build_leaderboard(load_task_runs([runs]), baseline="lavida", n_boot=50)
    assert list(board.raw["label"]) == ["lavida", "shirg_fixed@runs/lora_r32/latest", "pool_k"]
    keys = list(board.labels)
    assert row_labels(keys) == board.labels


def test_run_meta_is_typed_and_carries_the_identity() -> None:
    """The harness's run_meta (RunMeta.to_json) reads back as a RunMeta; per-sample keys beside it are ignored."""
    from shirg_eval.harness.identity import run_meta
    from shirg_eval.records import RunMeta

    described = {"variant": "shirg_fixed", "resolution": 672, "selector": "shirg_fixed", "selector_params": {"k": 768},
                 "view_mode": "resize", "pretrained": "/m", "checkpoint_path": None, "config_sha256": None,
                 "lora": {"path": "/runs/a/checkpoint-5", "step": 5, "sha256": "f0", "variant": "shirg_fixed",
                          "rank": 8, "base_id": None, "base_weights_sha256": None, "base_mismatch": {},
                          "merged": True},
                 "seed": 0, "device": "cpu", "dtype": "float32", "attn_implementation": "sdpa",
                 "versions": {"torch": "x"}}
    meta = run_meta("shirg_fixed", parse_model_args("shirg_fixed", {"k": 576}), described)
    data = json.loads(json.dumps({**meta.to_json(), "request_ms": 3.0, "selection": {}}))
    assert "threshold" not in data and "compile_bucket" not in data and "anyres" not in data
    assert RunMeta.from_json(data) == meta
    key = RowKey.of(meta.identity)
    assert (key.label(), key.lora_sha256) == ("shirg_fixed[k=576]@/runs/a/checkpoint-5", "f0")
    with pytest.raises(ValueError, match="unknown keys"):
        RunMeta.from_json({**data, "renamed": 1})


def test_rows_told_apart_only_by_a_digest_name_it() -> None:
    """The same LoRA path retrained in between: two rows, and their labels say which weights each used."""
    first, second = RowKey("shirg_fixed", "/runs/a", "", "pretrained=/m", None, "f0" * 32), RowKey(
        "shirg_fixed", "/runs/a", "", "pretrained=/m", None, "0f" * 32)
    labels = row_labels([first, second, RowKey("lavida", None, "", "pretrained=/m")])
    assert labels[first] == "shirg_fixed@/runs/a <lora=f0f0f0f0f0f0>"
    assert labels[second] == "shirg_fixed@/runs/a <lora=0f0f0f0f0f0f>"
    assert list(labels.values())[2] == "lavida"
