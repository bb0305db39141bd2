"""chartqa_200 / docvqa_200: uids, subset rule, manifests, results, aggregations, lmms-eval loading."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import datasets
import pytest

from shirg_eval.data.synthetic import make_chartqa, make_docvqa, write_dataset
from shirg_eval.harness import efficiency
from shirg_eval.tasks import data_source, efficiency_metrics, inputs, results, specs, subset

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"


def _load_utils(task: str) -> ModuleType:
    """Import a task's utils.py by path, the way lmms-eval's ``!function`` does."""
    path = TASKS / task / "utils.py"
    spec = importlib.util.spec_from_file_location(f"_test_utils_{task}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CQ = _load_utils("chartqa_200")
DV = _load_utils("docvqa_200")


def _chartqa_text_ds(n_human: int, n_aug: int, seed: int = 0) -> datasets.Dataset:
    rows = [{"type": "human_test", "question": f"Q{i}?", "answer": str(i)} for i in range(n_human)]
    rows += [{"type": "augmented_test", "question": f"A{i}?", "answer": str(i)} for i in range(n_aug)]
    random.Random(seed).shuffle(rows)
    return datasets.Dataset.from_list(rows)


# --------------------------------------------------------------------------------------------- subset rule


def test_subset_counts_stratified_and_shuffle_stable() -> None:
    ds = _chartqa_text_ds(150, 260, seed=0)
    out = subset.process_docs_for(ds, "chartqa_200")
    assert len(out) == 200
    types = out["type"]
    assert list(types).count("human_test") == 100 and list(types).count("augmented_test") == 100
    uids = list(out["shirg_uid"])
    assert len(set(uids)) == 200
    shuffled = subset.process_docs_for(ds.shuffle(seed=123), "chartqa_200")
    assert list(shuffled["shirg_uid"]) == uids  # same docs, same order
    # Ordered by sha1(f"{seed}:{uid}"), which interleaves the strata.
    keys = [subset.subset_key(u) for u in uids]
    assert keys == sorted(keys)
    assert set(types[:20]) == {"human_test", "augmented_test"}
    # Idempotent: running again on the output keeps it.
    assert list(subset.process_docs_for(out, "chartqa_200")["shirg_uid"]) == uids


def test_process_docs_declares_the_question() -> None:
    out = subset.process_docs_for(_chartqa_text_ds(5, 5), "chartqa_200")
    assert list(out["shirg_question"]) == list(out["question"])
    # Idempotent with the derived columns present.
    assert subset.process_docs_for(out, "chartqa_200")["shirg_question"] == out["shirg_question"]


def test_subset_clamps_when_too_few_docs() -> None:
    out = subset.process_docs_for(_chartqa_text_ds(7, 13), "chartqa_200")
    assert len(out) == 20 and list(out["type"]).count("human_test") == 7


def test_uid_definition_and_duplicates() -> None:
    doc = {"type": "human_test", "question": "What is X?", "answer": "5"}
    import hashlib

    expected = hashlib.sha1(b"chartqa\x1fhuman_test\x1fWhat is X?\x1f5").hexdigest()[:16]
    uids, _, keep = subset.compute_uids(datasets.Dataset.from_list([doc]), specs.SPECS["chartqa_200"])
    assert uids == [expected] and keep == [0]
    # Same text, different images -> different uids; identical rows -> kept once.
    recs = make_chartqa(2, seed=0)
    rows = [dict(recs[0]), {**recs[1], "type": recs[0]["type"], "question": recs[0]["question"],
                            "answer": recs[0]["answer"]}, dict(recs[0])]
    from shirg_eval.data.synthetic import chartqa_features

    ds = datasets.Dataset.from_list(rows, features=chartqa_features())
    uids, _, keep = subset.compute_uids(ds, specs.SPECS["chartqa_200"])
    assert len(uids) == 2 and uids[0] != uids[1] and keep == [0, 1]


def test_docvqa_subset() -> None:
    rows = [{k: v for k, v in r.items() if k != "image"} for r in make_docvqa(230, seed=1, render=False)]
    ds = datasets.Dataset.from_list(rows)
    out = DV.process_docs(ds)
    assert len(out) == 200
    assert list(DV.process_docs(ds.shuffle(seed=5))["shirg_uid"]) == list(out["shirg_uid"])


def test_manifest_roundtrip_and_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{k: v for k, v in r.items() if k != "image"} for r in make_chartqa(200, 0, render=False)]
    ds = datasets.Dataset.from_list(rows)
    # The committed synthetic manifest is found (by fingerprint) and matches.
    out = subset.process_docs_for(ds, "chartqa_200")
    committed = json.loads((TASKS / "chartqa_200/manifests/synthetic_seed0_n200.json").read_text())
    assert list(out["shirg_uid"]) == committed["uids"]
    assert subset.build_manifest(ds, "chartqa_200", source="x")["uids"] == committed["uids"]
    # A manifest for the same fingerprint but other uids makes process_docs refuse.
    spec = specs.SPECS["chartqa_200"]
    fake_dir = tmp_path / "chartqa_200" / "manifests"
    fake_dir.mkdir(parents=True)
    bad = dict(committed, uids=list(reversed(committed["uids"])))
    (fake_dir / "bad.json").write_text(json.dumps(bad))
    monkeypatch.setattr(specs, "TASKS_DIR", tmp_path)
    assert spec.manifest_dir == fake_dir
    with pytest.raises(ValueError, match="differs from manifest"):
        subset.process_docs_for(ds, "chartqa_200")


def test_manifest_cli(tmp_path: Path) -> None:
    path = write_dataset(make_chartqa(6, seed=2), tmp_path / "data")
    out = tmp_path / "m.json"
    assert subset.main(["manifest", "--task", "chartqa_200", "--data", str(path), "--out", str(out)]) == 0
    manifest = json.loads(out.read_text())
    assert manifest["format"] == subset.MANIFEST_FORMAT and len(manifest["uids"]) == 6
    assert set(manifest) >= {"seed", "rule", "quotas", "dataset_fingerprint", "num_source_docs", "source"}


# --------------------------------------------------------------------------------------------- results


@pytest.fixture(autouse=True)
def _clean_efficiency() -> None:
    efficiency.clear()
    yield
    efficiency.clear()


def test_chartqa_process_results_without_efficiency() -> None:
    doc = {"type": "human_test", "question": "q", "answer": "42", "shirg_uid": "u1"}
    res = CQ.process_results(doc, [" 43 "])
    assert res["shirg_uid"] == "u1"
    assert res["relaxed_overall"] == 1.0 and res["relaxed_human_split"] == 1.0 and res["relaxed_norm"] == 1.0
    assert "relaxed_augmented_split" not in res
    assert res["exact_match"] == 0.0
    assert res["cider"] == {"pred": "43", "refs": ["42"]}
    for key in ("latency_ms", "prefill_ms", "denoise_ms", "peak_mem_gb", "visual_tokens", "warmup", "run_meta"):
        assert res[key] is None
    assert res["latency_ms_mean"] == {"value": None, "warmup": False}
    aug = CQ.process_results({**doc, "type": "augmented_test"}, ["forty"])
    assert aug["relaxed_augmented_split"] == 0.0 and "relaxed_human_split" not in aug
    # Headline = lmms-eval's rule; relaxed_norm = the normalised extra column.
    pct = CQ.process_results({**doc, "answer": "42"}, ["42%"])
    assert pct["relaxed_overall"] == 0.0 and pct["relaxed_norm"] == 1.0


def test_docvqa_process_results_with_efficiency() -> None:
    rec = efficiency.EfficiencyRecord(latency_ms=120.0, prefill_ms=20.0, denoise_ms=100.0, peak_mem_gb=3.5,
                                      peak_mem_kind="cpu_peak_rss", visual_tokens=768, warmup=True,
                                      meta={"variant": "shirg-768"})
    efficiency.record("d1", rec)
    doc = {"questionId": "1", "question": "q", "answers": ["John Clark", "J. Clark"], "shirg_uid": "d1"}
    res = DV.process_results(doc, ["Jon Clark"])
    assert res["anls"] == pytest.approx(0.9) and res["exact_match"] == 0.0
    assert res["latency_ms"] == 120.0 and res["visual_tokens"] == 768 and res["warmup"] is True
    assert res["peak_mem_kind"] == "cpu_peak_rss" and res["run_meta"] == {"variant": "shirg-768"}
    assert res["latency_ms_p95"] == {"value": 120.0, "warmup": True}
    # Pure: a retry gives the same answer and the record is still there.
    assert DV.process_results(doc, ["Jon Clark"]) == res
    assert efficiency.lookup("d1") is rec
    json.dumps(res)  # the samples log must be able to write it


def test_efficiency_aggregations() -> None:
    items = [{"value": 1000.0, "warmup": True}, {"value": 10.0, "warmup": False}, {"value": 20.0, "warmup": False},
             {"value": 30.0, "warmup": False}, {"value": None, "warmup": False}, {"value": 40.0, "warmup": False}]
    assert efficiency_metrics.agg_latency_ms_mean(items) == pytest.approx(25.0)  # warm-up and None left out
    assert efficiency_metrics.agg_latency_ms_p50(items) == pytest.approx(25.0)
    assert efficiency_metrics.agg_latency_ms_p95(items) == pytest.approx(38.5)  # numpy linear: 30 + 0.85 * 10
    assert efficiency_metrics.agg_peak_mem_gb_max(items) == 1000.0  # a high-water mark counts the warm-up too
    only_warm = [{"value": 7.0, "warmup": True}]
    assert efficiency_metrics.agg_prefill_ms_mean(only_warm) == 7.0  # all warm-up: use them
    assert efficiency_metrics.agg_denoise_ms_mean([{"value": None, "warmup": False}] * 3) is None  # never 0
    assert efficiency_metrics.agg_visual_tokens_mean([]) is None
    # a token count is exact: the warm-up sample counts in its mean (only timings drop warm-up)
    tokens = [{"value": 900.0, "warmup": True}, {"value": 912.0, "warmup": False}, {"value": 918.0, "warmup": False}]
    assert efficiency_metrics.agg_visual_tokens_mean(tokens) == pytest.approx(910.0)


def test_cider_aggregation() -> None:
    items = [{"pred": "a b c d", "refs": ["a b c d"]}, {"pred": "e f g h", "refs": ["e f g h"]}]
    assert results.aggregate_cider(items) == pytest.approx(1000.0)
    assert results.aggregate_cider([]) is None


def test_prompts() -> None:
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer the question with a single word."}
    assert inputs.doc_to_text({"question": "Which?"}, kwargs) == "Which?\nAnswer the question with a single word."


# --------------------------------------------------------------------------------------------- lmms-eval


@pytest.fixture(scope="module")
def local_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {
        "chartqa": write_dataset(make_chartqa(20, seed=0), root / "chartqa"),
        "docvqa": write_dataset(make_docvqa(20, seed=0), root / "docvqa", fmt="disk"),
    }


@pytest.fixture(scope="module")
def task_manager():  # noqa: ANN201
    from lmms_eval.tasks import TaskManager

    # include_defaults=True on purpose: checks that our names do not collide with built-in tasks.
    return TaskManager(include_path=str(TASKS))


def test_lmms_eval_loads_local_data(task_manager, local_data, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from lmms_eval.tasks import get_task_dict

    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(local_data["chartqa"]))
    monkeypatch.setenv("SHIRG_DOCVQA_PATH", str(local_data["docvqa"]))
    assert task_manager.task_index["chartqa_200"]["yaml_path"].startswith(str(TASKS))
    tasks = get_task_dict(["chartqa_200", "docvqa_200"], task_manager)

    chart = tasks["chartqa_200"]
    docs = chart.test_docs()
    assert len(docs) == 20 and "shirg_uid" in docs.column_names
    doc = docs[0]
    assert chart.doc_to_text(doc) == doc["question"] + "\nAnswer the question with a single word."
    assert chart.config.generation_kwargs["max_new_tokens"] == 16
    assert chart.config.generation_kwargs["temperature"] == 0
    assert chart.doc_to_visual(doc)[0].mode == "RGB"
    res = chart.process_results(doc, [doc["answer"]])
    assert res["relaxed_overall"] == 1.0 and res["shirg_uid"] == doc["shirg_uid"]
    agg = chart.aggregation()
    assert set(agg) >= {"relaxed_overall", "relaxed_human_split", "relaxed_augmented_split", "exact_match",
                        "cider", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "prefill_ms_mean",
                        "denoise_ms_mean", "peak_mem_gb_max", "visual_tokens_mean"}
    assert agg["latency_ms_mean"]([res["latency_ms_mean"]]) is None

    dv = tasks["docvqa_200"]
    ddocs = dv.test_docs()
    assert len(ddocs) == 20 and dv.config.test_split == "validation"
    assert dv.doc_to_text(ddocs[0]).endswith("\nAnswer the question using a single word or phrase.")
    assert dv.config.generation_kwargs["max_new_tokens"] == 32
    assert set(dv.aggregation()) >= {"anls", "exact_match", "cider", "latency_ms_mean", "visual_tokens_mean"}


def test_hub_failure_names_env_var(task_manager, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from lmms_eval.tasks import get_task_dict

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionError("no network")

    monkeypatch.delenv("SHIRG_CHARTQA_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # also skips lmms-eval's retry loop
    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(data_source.DataUnavailableError, match="SHIRG_CHARTQA_PATH"):
        get_task_dict(["chartqa_200"], task_manager)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_fails_fast_without_retries(task_manager, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """No SHIRG_CHARTQA_PATH, no HF_HUB_OFFLINE, hub unreachable: the clear error, at once, no download tried.

    (A bound on wall time on an error path: lmms-eval's own path retries for about 80 s.)
    """
    import time

    import huggingface_hub.constants
    from lmms_eval.tasks import get_task_dict

    calls = []

    def slow_hub(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args)
        time.sleep(3)  # what a dead network costs per attempt
        raise ConnectionError("no network")

    monkeypatch.delenv("SHIRG_CHARTQA_PATH", raising=False)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(datasets, "load_dataset", slow_hub)
    start = time.perf_counter()
    with pytest.raises(data_source.DataUnavailableError, match="unreachable.*SHIRG_CHARTQA_PATH") as err:
        get_task_dict(["chartqa_200"], task_manager)
    assert time.perf_counter() - start < 10
    assert calls == [] and err.value.__cause__ is None and err.value.__suppress_context__


def test_hub_probe_counts_any_http_answer_as_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    import huggingface_hub.constants

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert data_source.hub_unreachable() is None
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert "Connect" in data_source.hub_unreachable()


def test_results_json_keeps_only_metrics(task_manager, local_data, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Per-sample fields (shirg_uid, run_meta, latency_ms, ...) stay in the samples log, out of results.json."""
    import lmms_eval.evaluator as evaluator
    from lmms_eval.evaluator_utils import TaskOutput
    from lmms_eval.tasks import get_task_dict

    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(local_data["chartqa"]))
    task = get_task_dict(["chartqa_200"], task_manager)["chartqa_200"]
    assert evaluator.consolidate_results.shirg_metrics_only
    output = TaskOutput.from_taskdict("chartqa_200", task)
    docs = task.test_docs()
    for doc in [docs[0], docs[1]]:
        for key, value in task.process_results(doc, [doc["answer"]]).items():
            output.sample_metrics[(key, "none")].append(value)
    assert ("run_meta", "none") in output.sample_metrics  # process_results does return them
    output.calculate_aggregate_metric(bootstrap_iters=0)
    consolidated = evaluator.consolidate_results([output])[0]["chartqa_200"]
    metrics = set(task.aggregation())
    names = {key.split(",")[0] for key in consolidated if "," in key}
    leftovers = {n for n in names if not any(n == m or n.startswith(f"{m}_stderr") for m in metrics)}
    assert leftovers == set(), leftovers
    assert consolidated["relaxed_overall,none"] == 1.0 and "relaxed_norm,none" in consolidated
    assert [] not in consolidated.values()


def test_local_source_variants(tmp_path: Path) -> None:
    recs = [{k: v for k, v in r.items() if k != "image"} for r in make_chartqa(4, 0, render=False)]
    ds = datasets.Dataset.from_list(recs)
    ds.to_parquet(str(tmp_path / "f.parquet"))
    assert data_source.local_source(str(tmp_path / "f.parquet"), "test") == ("parquet", {"data_files": {"test": [str(tmp_path / "f.parquet")]}})
    snap = tmp_path / "snap" / "data"
    snap.mkdir(parents=True)
    ds.to_parquet(str(snap / "test-00000-of-00001.parquet"))
    ds.to_parquet(str(snap / "train-00000-of-00001.parquet"))
    builder, kwargs = data_source.local_source(str(tmp_path / "snap"), "test")
    assert builder == "parquet" and [Path(p).name for p in kwargs["data_files"]["test"]] == ["test-00000-of-00001.parquet"]
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    assert data_source.local_source(str(tmp_path / "dd"), "test") == (str((tmp_path / "dd").resolve()), {"load_from_disk": True})
    ds.save_to_disk(str(tmp_path / "plain"))
    assert len(data_source.load_split(str(tmp_path / "plain"), "test")) == 4
    assert len(data_source.load_split(str(tmp_path / "dd"), "test")) == 4
    with pytest.raises(FileNotFoundError):
        data_source.local_source(str(tmp_path / "missing"), "test")
