"""The lmms-eval plugin: model args, entry points, the ``lmms_eval`` command end to end on synthetic data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shirg_eval.harness.model_args import parse_model_args
from shirg_eval.visual.variants import VARIANTS

BIN = Path(sys.executable).parent
EFFICIENCY = ("latency_ms", "prefill_ms", "denoise_ms", "peak_mem_gb", "visual_tokens")


def test_model_args_types_and_unknown_keys():
    args = parse_model_args("shirg_fixed", {"k": 512, "alpha": 1, "scaffold": False, "batch_size": 1})
    assert args.k == 512 and args.alpha == 1.0 and args.scaffold is False
    assert args.selector_params() == {"k": 512, "alpha": 1.0, "scaffold": False}
    assert parse_model_args("shirg_original", {"merge": "kept_components"}).selector_params() == {
        "merge": "kept_components"}
    # everything the pipeline takes besides the variant (the harness and the sweep-budget test share it)
    assert parse_model_args("hired", {"k": 576, "anyres": True, "selector": "hired", "resolution": 384,
                                      "lm_layers": 3, "seed": 2}).variant_params() == {
        "k": 576, "lm_layers": 3, "selector": "hired", "resolution": 384, "anyres": True}
    with pytest.raises(ValueError, match=r"unknown model_args \['kk'\]; valid: pretrained"):
        parse_model_args("shirg_fixed", {"kk": 3})
    with pytest.raises(ValueError, match="k='many' should be int"):
        parse_model_args("shirg_fixed", {"k": "many"})
    with pytest.raises(ValueError, match="prefix_cache=3 should be bool"):
        parse_model_args("shirg_fixed", {"prefix_cache": 3})
    assert parse_model_args("shirg_fixed", {"batch_size": "8"}).batch_size == 8
    assert parse_model_args("shirg_fixed", {}).batch_size == 1
    for bad, message in (("auto", "automatic sizing"), ("auto:4", "automatic sizing"), ("0", ">= 1"), ("x", ">= 1")):
        with pytest.raises(ValueError, match=message):
            parse_model_args("shirg_fixed", {"batch_size": bad})
    args = parse_model_args("shirg_fixed", {"decoding": "threshold", "threshold": 0.9})
    assert (args.decoding, args.threshold) == ("threshold", 0.9)
    with pytest.raises(ValueError, match="decoding='fast'"):
        parse_model_args("shirg_fixed", {"decoding": "fast"})
    with pytest.raises(ValueError, match="kv_dtype"):
        parse_model_args("lavida", {"kv_dtype": "int4"})


def test_every_variant_is_an_entry_point():
    from lmms_eval.models import get_model

    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    assert list(MODEL_CLASSES) == list(VARIANTS)  # one declared class per preset, in the presets' order
    for name in VARIANTS:
        cls = get_model(name)
        assert cls.variant == name and cls.is_simple


def test_lavida_rejects_selector_arguments(tiny_checkpoint):
    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    with pytest.raises(ValueError, match="released path and takes no selector"):
        MODEL_CLASSES["lavida"](pretrained=str(tiny_checkpoint), k=512)


def test_selection_query_source():
    from shirg_eval.query import selection_query

    prompt = "What is the peak?\nAnswer the question with a single word."
    assert selection_query({"shirg_question": "Declared?", "question": "What is the peak?"}, prompt) == (
        "Declared?", "shirg_question")
    assert selection_query({"question": "What is the peak?"}, prompt) == ("What is the peak?", "question")
    # Found ignoring case (lmms-eval's TextVQA prompt capitalises it), returned as the prompt spells it.
    assert selection_query({"question": "peak"}, "Q: PEAK?", "other") == ("PEAK", "question")
    # A question the prompt does not contain (rewritten by the task), or none at all: the whole prompt.
    assert selection_query({"question": "peak height"}, "Q: PEAK?", "other") == ("Q: PEAK?", "prompt")
    assert selection_query(None, "prompt text", "other") == ("prompt text", "prompt")


def test_selection_ignores_the_instruction(tiny_checkpoint, monkeypatch):
    """The post-prompt does not move the kept tokens; the question does."""
    from lmms_eval.api.instance import Instance
    from PIL import Image

    from shirg_eval.harness.lmms_model import MODEL_CLASSES
    from shirg_eval.pipeline import ShirgPipeline

    monkeypatch.delenv("SHIRG_JOURNAL_DIR", raising=False)
    monkeypatch.delenv("SHIRG_PICTURE_DIR", raising=False)
    lmm = MODEL_CLASSES["shirg_fixed"](pretrained=str(tiny_checkpoint), device="cpu", dtype="float32")
    image = Image.effect_noise((96, 64), 60).convert("RGB")
    docs = [{"image": image, "question": q, "shirg_question": q, "shirg_uid": f"u{i}"}
            for i, q in enumerate(["What is the highest bar?", "Which year had the lowest revenue in Europe?"])]
    lmm.task_dict = {"t": {"test": docs}}
    kept = []
    answer_batch = ShirgPipeline.answer_batch

    def spy(self, *args, **kwargs):
        out = answer_batch(self, *args, **kwargs)
        kept.append(out[0].visual.kept_indices.tolist())
        return out

    monkeypatch.setattr(ShirgPipeline, "answer_batch", spy)

    def ask(doc_id, post_prompt):
        context = docs[doc_id]["question"] + post_prompt
        request = Instance("generate_until", (context, {"max_new_tokens": 4, "until": []}, lambda d: [d["image"]],
                                              doc_id, "t", "test"), 0, {"task": "t", "doc_id": doc_id, "repeats": 1})
        lmm.generate_until([request])
        return kept[-1]

    first = ask(0, "\nAnswer the question with a single word.")
    assert ask(0, "\nAnswer with one number, in digits, without units.") == first
    assert ask(1, "\nAnswer the question with a single word.") != first


@pytest.fixture(scope="module")
def synthetic_env(tmp_path_factory, tiny_checkpoint):
    from shirg_eval.cli.synth import main as synth

    root = tmp_path_factory.mktemp("synth")
    synth(["--out", str(root), "--n", "12", "--what", "chartqa,docvqa"])
    env = dict(os.environ, SHIRG_CHARTQA_PATH=str(root / "chartqa" / "test.parquet"),
               SHIRG_DOCVQA_PATH=str(root / "docvqa" / "validation.parquet"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env, tiny_checkpoint


def run_lmms_eval(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lmms_eval"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def load_outputs(out: Path, task: str) -> tuple[dict, list[dict]]:
    results = sorted(out.rglob("*_results.json"))
    assert results, f"no results.json under {out}"
    samples = sorted(out.rglob(f"*_samples_{task}.jsonl"))
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines()]
    return json.loads(results[-1].read_text()), rows


@pytest.mark.slow
@pytest.mark.parametrize("task,metrics", [
    ("chartqa_200", ["relaxed_overall", "relaxed_human_split", "relaxed_augmented_split", "relaxed_norm",
                     "exact_match", "cider"]),
    ("docvqa_200", ["anls", "exact_match", "cider"]),
])
def test_lmms_eval_end_to_end(synthetic_env, tmp_path, task, metrics):
    env, ckpt = synthetic_env
    proc = run_lmms_eval(env, "--model", "shirg_fixed", "--model_args", f"pretrained={ckpt}", "--tasks", task,
                         "--limit", "3", "--output_path", str(tmp_path), "--log_samples", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results, rows = load_outputs(tmp_path, task)
    values = results["results"][task]
    for metric in metrics + ["latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "peak_mem_gb_max",
                             "visual_tokens_mean"]:
        assert f"{metric},none" in values, metric
    assert values["visual_tokens_mean,none"] == 912
    # results.json holds metrics only; per-sample fields live in the samples log
    assert not {"shirg_uid,none", "run_meta,none", "latency_ms,none", "warmup,none"} & set(values)
    assert [] not in values.values()
    assert len(list(tmp_path.glob("selection_shirg_fixed_*.png"))) == 3  # overlays for the leaderboard gallery
    assert len(rows) == 3
    for i, row in enumerate(rows):
        for field in EFFICIENCY:
            assert isinstance(row[field], (int, float)) and row[field] >= 0, field
        assert row["visual_tokens"] == 912 and row["shirg_uid"]
        assert row["warmup"] is (i == 0) or row["warmup"] == (i == 0)
        assert row["run_meta"]["variant"] == "shirg_fixed" and row["run_meta"]["selector"] == "shirg_fixed"
        assert row["run_meta"]["selection_query"] == "shirg_question"  # the question alone conditions selection


@pytest.mark.slow
def test_two_tasks_warm_up_once_each_and_attn_implementation(synthetic_env, tmp_path):
    env, ckpt = synthetic_env
    proc = run_lmms_eval(env, "--model", "shirg_original", "--model_args",
                         f"pretrained={ckpt},gen_length=8,attn_implementation=eager", "--tasks",
                         "chartqa_200,docvqa_200", "--limit", "2", "--output_path", str(tmp_path), "--log_samples",
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for task in ("chartqa_200", "docvqa_200"):
        results, rows = load_outputs(tmp_path, task)
        assert [r["warmup"] for r in rows] == [True, False], task
        assert all(r["run_meta"]["attn_implementation"] == "eager" for r in rows)
        tokens = [r["visual_tokens"] for r in rows]
        assert results["results"][task]["visual_tokens_mean,none"] == pytest.approx(sum(tokens) / 2)


@pytest.mark.slow
@pytest.mark.parametrize("variant,tokens", [
    ("lavida", None), ("lavida_384", 729), ("lavida_672", 2304), ("shirg_original", None), ("pool_k", 768),
    ("random_k", 768),
])
def test_every_variant_runs(synthetic_env, tmp_path, variant, tokens):
    env, ckpt = synthetic_env
    proc = run_lmms_eval(env, "--model", variant, "--model_args", f"pretrained={ckpt},gen_length=8",
                         "--tasks", "chartqa_200", "--limit", "1", "--output_path", str(tmp_path), "--log_samples",
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, rows = load_outputs(tmp_path, "chartqa_200")
    if tokens is not None:
        assert rows[0]["visual_tokens"] == tokens
    else:
        assert 100 < rows[0]["visual_tokens"] < 2304


@pytest.mark.slow
def test_missing_data_fails_with_only_the_message(synthetic_env, tmp_path):
    """No SHIRG_CHARTQA_PATH and no hub (unreachable, or HF_HUB_OFFLINE with an empty cache): exit 1 with the
    message that names the variable, no traceback, no retries."""
    import socket

    env, ckpt = synthetic_env
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    bare = {k: v for k, v in env.items() if k not in ("SHIRG_CHARTQA_PATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    bare.update(HF_ENDPOINT=f"http://127.0.0.1:{closed}", HF_DATASETS_CACHE=str(tmp_path / "empty_cache"))
    for extra, says in (({}, "unreachable"), ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set")):
        proc = run_lmms_eval({**bare, **extra}, "--model", "lavida", "--model_args", f"pretrained={ckpt}",
                             "--tasks", "chartqa_200", "--output_path", str(tmp_path), cwd=tmp_path)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, output[-3000:]
        assert "Traceback" not in output and "Retrying" not in output, output[-3000:]
        assert "lmms_eval: evaluation failed: chartqa_200: could not load" in proc.stderr
        assert says in proc.stderr and "Set SHIRG_CHARTQA_PATH" in proc.stderr


@pytest.mark.slow
def test_failures_exit_nonzero(synthetic_env, tmp_path):
    env, ckpt = synthetic_env
    proc = run_lmms_eval(env, "--model", "shirg_fixed", "--model_args", f"pretrained={ckpt}", "--tasks",
                         "no_such_task", "--output_path", str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and "Tasks not found: no_such_task" in proc.stderr
    proc = run_lmms_eval(env, "--model", "shirg_fixed", "--model_args", f"pretrained={tmp_path / 'missing'}",
                         "--tasks", "chartqa_200", "--limit", "1", "--output_path", str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and "no such directory" in proc.stderr


@pytest.mark.slow
def test_upstream_command_with_include_path(synthetic_env, tmp_path):
    import shirg_eval.tasks

    env, ckpt = synthetic_env
    tasks = str(Path(shirg_eval.tasks.__file__).parent)
    proc = subprocess.run([str(BIN / "lmms-eval"), "--model", "pool_k", "--model_args", f"pretrained={ckpt},k=64",
                           "--tasks", "docvqa_200", "--include_path", tasks, "--limit", "1", "--output_path",
                           str(tmp_path), "--log_samples"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, rows = load_outputs(tmp_path, "docvqa_200")
    assert rows[0]["visual_tokens"] == 64


def test_help_passes_through():
    proc = subprocess.run([str(BIN / "lmms_eval"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "eval" in proc.stdout and "tasks" in proc.stdout


@pytest.mark.slow
def test_interrupted_run_resumes_from_journal(synthetic_env, tmp_path):
    """A rerun reuses journaled answers (original timings, marked resumed) and only generates the rest."""
    env, ckpt = synthetic_env
    common = ["--model", "random_k", "--model_args", f"pretrained={ckpt},gen_length=8", "--tasks", "chartqa_200",
              "--output_path", str(tmp_path), "--log_samples"]
    first = run_lmms_eval(env, *common, "--limit", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    journal = next((tmp_path / ".shirg_journal").glob("answers-*.jsonl"))
    assert len(journal.read_text().splitlines()) == 2
    _, rows_before = load_outputs(tmp_path, "chartqa_200")
    second = run_lmms_eval(env, *common, "--limit", "3", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(journal.read_text().splitlines()) == 3  # one new sample generated, two reused
    samples = sorted(tmp_path.rglob("*_samples_chartqa_200.jsonl"))[-1]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    resumed = {r["shirg_uid"]: r for r in rows if r["run_meta"].get("resumed")}
    assert len(resumed) == 2
    for old in rows_before:
        assert resumed[old["shirg_uid"]]["latency_ms"] == old["latency_ms"]
        assert resumed[old["shirg_uid"]]["filtered_resps"] == old["filtered_resps"]


@pytest.mark.slow
def test_data_parallel_matches_one_process(synthetic_env, tmp_path):
    env, ckpt = synthetic_env
    args = ["--model", "random_k", "--model_args", f"pretrained={ckpt},gen_length=8", "--tasks", "chartqa_200",
            "--limit", "4", "--log_samples"]
    single = run_lmms_eval(env, *args, "--output_path", str(tmp_path / "one"), cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "shirg_eval.cli.lmms_eval"]
    dp = subprocess.run([*launch, *args, "--output_path", str(tmp_path / "two")], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=600)
    assert dp.returncode == 0, dp.stderr[-2000:]
    _, one = load_outputs(tmp_path / "one", "chartqa_200")
    _, two = load_outputs(tmp_path / "two", "chartqa_200")
    key = lambda rows: sorted((r["shirg_uid"], r["filtered_resps"], r["visual_tokens"]) for r in rows)  # noqa: E731
    assert key(one) == key(two) and len(one) == 4


def _corrupt_first_docs(src: Path, dst: Path, n_bad: int) -> None:
    """Copy a synthetic ChartQA parquet with the first ``n_bad`` images' PNG bytes truncated."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    images = table.column("image").to_pylist()
    for row in images[:n_bad]:
        row["bytes"] = row["bytes"][: len(row["bytes"]) // 2]
    idx = table.schema.get_field_index("image")
    table = table.set_column(idx, table.schema.field(idx), pa.array(images, type=table.schema.field(idx).type))
    pq.write_table(table, dst)


@pytest.mark.slow
def test_corrupt_sample_fails_loudly_or_is_counted(synthetic_env, tmp_path):
    env, ckpt = synthetic_env
    bad = tmp_path / "bad.parquet"
    _corrupt_first_docs(Path(env["SHIRG_CHARTQA_PATH"]), bad, n_bad=12)  # every doc: whichever --limit picks
    env = dict(env, SHIRG_CHARTQA_PATH=str(bad))
    args = ["--model", "lavida_384", "--tasks", "chartqa_200", "--limit", "2", "--log_samples"]
    strict = run_lmms_eval(env, *args, "--model_args", f"pretrained={ckpt},gen_length=8",
                           "--output_path", str(tmp_path / "strict"), cwd=tmp_path)
    assert strict.returncode != 0
    assert "2 of 2 samples failed" in strict.stderr and "truncated or corrupt" in strict.stderr
    lenient = run_lmms_eval(env, *args, "--model_args", f"pretrained={ckpt},gen_length=8,allow_failures=true",
                            "--output_path", str(tmp_path / "lenient"), cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    results, rows = load_outputs(tmp_path / "lenient", "chartqa_200")
    assert results["results"]["chartqa_200"]["failed,none"] == 2
    assert all(r["failed"] == 1 and "truncated or corrupt" in r["error"] for r in rows)
    assert all("relaxed_overall" not in r or r["relaxed_overall"] in (None, []) for r in rows)  # never scored 0


def test_warmup_is_the_first_sample_of_each_task():
    from types import SimpleNamespace

    from shirg_eval.harness import efficiency
    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    lmm = object.__new__(MODEL_CLASSES["shirg_fixed"])  # only _record's state, no checkpoint
    lmm._warm_tasks, lmm.run_meta = set(), {"variant": "shirg_fixed"}
    timings = {"latency_ms": 1.0, "prefill_ms": 0.5, "denoise_ms": 0.5}
    answer = SimpleNamespace(timings_ms=timings, peak_mem_gb=0.1, peak_mem_kind="cpu_peak_rss", info={},
                             visual=SimpleNamespace(views=None, info={}, n_tokens=912))
    order = [("chartqa_200", "c0"), ("chartqa_200", "c1"), ("docvqa_200", "d0"), ("docvqa_200", "d1"),
             ("chartqa_200", "c2")]
    flags = [lmm._record({"shirg_uid": uid}, answer, task).warmup for task, uid in order]
    assert flags == [True, False, True, False, False]
    assert efficiency.lookup("d0").warmup and not efficiency.lookup("d1").warmup


def test_attn_implementation_reaches_the_model(tiny_checkpoint):
    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    lmm = MODEL_CLASSES["shirg_fixed"](pretrained=str(tiny_checkpoint), device="cpu", dtype="float32",
                                       attn_implementation="eager")
    assert lmm.pipeline.model.language_model.config._attn_implementation == "eager"
    assert lmm.run_meta["attn_implementation"] == "eager"
    default = MODEL_CLASSES["shirg_fixed"](pretrained=str(tiny_checkpoint), device="cpu", dtype="float32")
    assert default.run_meta["attn_implementation"] == "sdpa"
    with pytest.raises(ValueError, match=r"--model shirg_fixed: .*attn_implementation=\"bogus\""):
        MODEL_CLASSES["shirg_fixed"](pretrained=str(tiny_checkpoint), device="cpu", attn_implementation="bogus")


def test_mistyped_model_suggests_the_closest_variant(monkeypatch, capsys):
    """One line with the closest registered SHIRG variant, not lmms-eval's list of every model; names come
    from lmms-eval's registry, so a newly registered variant is suggested too."""
    import copy

    import lmms_eval.models
    from lmms_eval.models.registry_v2 import ModelManifest

    from shirg_eval.cli.lmms_eval import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    assert main(["--model", "shirg_fixd", "--tasks", "chartqa_200"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmms_eval: error: unknown model 'shirg_fixd'. Did you mean 'shirg_fixed'?")
    assert len(err.splitlines()) == 1 and len(err) < 400 and "aero" not in err
    registry = copy.deepcopy(lmms_eval.models.MODEL_REGISTRY_V2)
    registry.register_manifest(ModelManifest(model_id="shirg_sparse_topk",
                                             simple_class_path="shirg_eval.harness.lmms_model.Shirg_sparse_topk"))
    monkeypatch.setattr(lmms_eval.models, "MODEL_REGISTRY_V2", registry)
    assert main(["--model", "shirg_sparse_topl", "--tasks", "chartqa_200"]) == 2
    assert "Did you mean 'shirg_sparse_topk'?" in capsys.readouterr().err
