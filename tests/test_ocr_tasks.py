"""infovqa_200 / textvqa_200 / ocrbench_200: subset rule, manifests, renderers, lmms-eval loading on odd images."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import random
from pathlib import Path

import datasets
import pytest
from PIL import Image

from shirg_eval.data import ocr_synthetic
from shirg_eval.data.ocr_synthetic import MAKERS, features_for, write_ocr_dataset
from shirg_eval.tasks import specs, subset

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
TASK_OF = {"infovqa": "infovqa_200", "textvqa": "textvqa_200", "ocrbench": "ocrbench_200"}


def _text_rows(kind: str, n: int, seed: int = 0) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "image"} for r in MAKERS[kind](n, seed, render=False)]


# --------------------------------------------------------------------------------------------- subset rule


def _ocrbench_like_1000() -> datasets.Dataset:
    """OCRBench's 1,000 items in its proportions (text only, distinct), shuffled."""
    rows = []
    for qtype, quota in specs.OCRBENCH_QUOTAS.items():
        dataset = "HME100k" if qtype.startswith("Handwritten Math") else "IIIT5K"
        rows += [{"dataset": dataset, "question_type": qtype, "question": f"{qtype} q{i}", "answer": [f"a{i}"]}
                 for i in range(quota * 5)]
    random.Random(3).shuffle(rows)
    return datasets.Dataset.from_list(rows)


def test_ocrbench_subset_keeps_ocrbench_proportions_in_any_order() -> None:
    ds = _ocrbench_like_1000()
    out = subset.process_docs_for(ds, "ocrbench_200")
    counts = collections.Counter(out["question_type"])
    assert len(out) == 200 and dict(counts) == specs.OCRBENCH_QUOTAS  # 10 per recognition type, 40, 20
    assert sum(counts[t] for t in specs.OCRBENCH_QUOTAS if "Recognition" in t and "Math" not in t) == 60
    assert list(subset.process_docs_for(ds.shuffle(seed=9), "ocrbench_200")["shirg_uid"]) == list(out["shirg_uid"])
    assert out["shirg_question"][0] == out["question"][0].strip()


def test_proportional_quotas_by_largest_remainder() -> None:
    # 1000 docs: 500/300/150/50 -> 100/60/30/10 exactly; 24 docs 12/9/3 into 7: 3.5/2.625/0.875 -> floors
    # 3/2/0, the two spare go to the largest remainders (z 0.875, y 0.625) -> 3/3/1
    strata = ["a"] * 500 + ["b"] * 300 + ["c"] * 150 + ["d"] * 50
    assert subset.proportional_quotas(strata, 200) == {"a": 100, "b": 60, "c": 30, "d": 10}
    assert subset.proportional_quotas(["x"] * 4 + ["y"] * 3, 7) == {"x": None, "y": None}  # fewer than total
    assert subset.proportional_quotas(["x"] * 12 + ["y"] * 9 + ["z"] * 3, 7) == {"x": 3, "y": 3, "z": 1}
    assert subset.proportional_quotas(list(reversed(strata)), 200) == subset.proportional_quotas(strata, 200)


def test_infovqa_stratum_is_the_sorted_answer_types() -> None:
    assert specs.infovqa_stratum({"answer_type": ["question span", "multi-span"]}) == "multi-span + question span"
    assert specs.infovqa_stratum({"answer_type": ["multi-span", "question span"]}) == "multi-span + question span"
    assert specs.infovqa_stratum({"answer_type": "single span"}) == "single span"
    assert specs.infovqa_stratum({"answer_type": []}) == "none"
    rows = _text_rows("infovqa", 600, seed=1)
    ds = datasets.Dataset.from_list(rows)
    out = subset.process_docs_for(ds, "infovqa_200")
    assert len(out) == 200
    full = collections.Counter(specs.infovqa_stratum(r) for r in rows)
    kept = collections.Counter(specs.infovqa_stratum(r) for r in out)
    for stratum, n in full.items():  # each answer-type stratum keeps its share (largest remainder: within 1)
        assert abs(kept[stratum] - n * 200 / len(rows)) < 1
    assert list(subset.process_docs_for(ds.shuffle(seed=2), "infovqa_200")["shirg_uid"]) == list(out["shirg_uid"])


def test_textvqa_subset_and_question() -> None:
    ds = datasets.Dataset.from_list(_text_rows("textvqa", 230, seed=1))
    out = subset.process_docs_for(ds, "textvqa_200")
    assert len(out) == 200 and len(set(out["shirg_uid"])) == 200
    assert list(subset.process_docs_for(ds.shuffle(seed=4), "textvqa_200")["shirg_uid"]) == list(out["shirg_uid"])
    # The prompt shows the question capitalised (lmms-eval's textvqa_doc_to_text): so does shirg_question
    assert all(q == raw.capitalize() for q, raw in zip(out["shirg_question"], out["question"], strict=True))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ocr_synth")
    return {kind: write_ocr_dataset(kind, MAKERS[kind](200, 0), root / kind) for kind in MAKERS}


def test_committed_manifests_match_rendering(rendered: dict[str, Path]) -> None:
    """tasks/*/manifests/synthetic_seed0_n200.json describe what `shirg-synth --seed 0 --n 200` renders."""
    for kind, path in rendered.items():
        task = TASK_OF[kind]
        ds = datasets.load_dataset("parquet", data_files={"x": str(path)})["x"]
        committed = json.loads((TASKS / task / "manifests" / "synthetic_seed0_n200.json").read_text())
        built = subset.build_manifest(ds, task, source=committed["source"])
        assert built == committed, task
        assert committed["dataset_fingerprint"] == hashlib.sha1("\n".join(sorted(committed["uids"])).encode()).hexdigest()
        assert list(subset.process_docs_for(ds, task)["shirg_uid"]) == committed["uids"]


def test_renderers_are_deterministic_and_in_schema() -> None:
    for kind, make in MAKERS.items():
        a, b = make(6, 0), make(8, 0)
        assert a == b[:6], kind  # item i does not depend on n
        assert set(a[0]) == set(features_for(kind)), kind
    info = MAKERS["infovqa"](4, 0)
    for r in info:
        w, h = Image.open(io.BytesIO(r["image"])).size
        assert w == 600 and h >= 3 * w  # tall infographics
    types = collections.Counter(r["question_type"] for r in MAKERS["ocrbench"](200, 0, render=False))
    assert dict(types) == specs.OCRBENCH_QUOTAS
    assert all(len(r["answers"]) == 10 for r in MAKERS["textvqa"](5, 0, render=False))


def test_cli_writes_the_three_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shirg_eval.cli import synth

    assert synth.main(["--out", str(tmp_path), "--n", "3", "--what", "infovqa,textvqa,ocrbench"]) == 0
    out = capsys.readouterr().out
    for var in ocr_synthetic.ENV_VARS.values():
        assert f"{var}=" in out
    assert (tmp_path / "ocrbench" / "test.parquet").is_file() and (tmp_path / "textvqa" / "validation.parquet").is_file()


# --------------------------------------------------------------------------------------------- odd images


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def odd_images() -> dict[str, bytes]:
    """The shapes and modes hub rows come in: tall 1:4, a 4000x300 strip, a 64x64 thumbnail, CMYK JPEG,
    RGBA / P / L PNG."""
    base = Image.new("RGB", (300, 1200), (250, 250, 245))
    return {
        "tall_1x4": _encode(base, "PNG"),
        "strip_4000x300": _encode(Image.new("RGB", (4000, 300), (200, 220, 240)), "PNG"),
        "thumb_64": _encode(Image.new("RGB", (64, 64), (10, 10, 10)), "PNG"),
        "cmyk_jpeg": _encode(Image.new("CMYK", (320, 240), (0, 50, 100, 0)), "JPEG"),
        "rgba_png": _encode(Image.new("RGBA", (200, 150), (255, 0, 0, 90)), "PNG"),
        "p_png": _encode(Image.new("RGB", (180, 120), (0, 128, 0)).convert("P"), "PNG"),
        "l_png": _encode(Image.new("L", (240, 160), 128), "PNG"),
    }


def write_odd_rows(kind: str, out_dir: Path) -> Path:
    images = list(odd_images().values())
    rows = MAKERS[kind](len(images), seed=5, render=False)
    for row, image in zip(rows, images, strict=True):
        row["image"] = image
    return write_ocr_dataset(kind, rows, out_dir)


HEADLINE = {"infovqa_200": "anls", "textvqa_200": "vqa_accuracy", "ocrbench_200": "ocrbench_mean_score"}


@pytest.fixture(scope="module")
def task_manager():  # noqa: ANN201
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS))  # built-ins included: our names must not collide with theirs


def test_tasks_load_and_score_odd_images(task_manager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from lmms_eval.tasks import get_task_dict

    for kind in MAKERS:
        monkeypatch.setenv(specs.SPECS[TASK_OF[kind]].env_var, str(write_odd_rows(kind, tmp_path / kind)))
    tasks = get_task_dict(list(HEADLINE), task_manager)
    for name, task in tasks.items():
        docs = task.test_docs()
        assert len(docs) == 7, name
        sizes = set()
        for doc in docs:
            image = task.doc_to_visual(doc)[0]
            assert image.mode == "RGB"
            sizes.add(image.size)
            gold = doc.get("answers") or doc.get("answer")
            out = task.process_results(doc, [gold[0]])
            assert out[HEADLINE[name]] > 0 and out["failed"] == 0, (name, out)
        assert {(300, 1200), (4000, 300), (64, 64)} <= sizes
    info, text, ocr = tasks["infovqa_200"], tasks["textvqa_200"], tasks["ocrbench_200"]
    doc = text.test_docs()[0]
    assert text.doc_to_text(doc) == doc["question"].capitalize() + "\nAnswer the question using a single word or phrase."
    assert text.config.generation_kwargs["until"] == ["ASSISTANT:"] and text.config.generation_kwargs["max_new_tokens"] == 32
    assert ocr.doc_to_text(ocr.test_docs()[0]) == ocr.test_docs()[0]["question"].strip()
    assert ocr.config.generation_kwargs["max_new_tokens"] == 128
    assert info.config.generation_kwargs["max_new_tokens"] == 32 and info.config.dataset_name == "InfographicVQA"
    assert set(ocr.aggregation()) >= {"ocrbench_mean_score", "ocrbench_correct", "exact_match", "cider",
                                      *(m for m in __import__("shirg_eval.tasks.ocr_results", fromlist=["x"])
                                        .OCRBENCH_TYPE_METRICS.values())}


def test_missing_column_is_named(tmp_path: Path) -> None:
    rows = _text_rows("ocrbench", 3)
    for r in rows:
        del r["question_type"]
    with pytest.raises(ValueError, match=r"SHIRG_OCRBENCH_PATH\) lacks column\(s\) \['question_type'\]"):
        subset.process_docs_for(datasets.Dataset.from_list(rows), "ocrbench_200")


def test_no_local_copy_and_no_hub_names_each_env_var(task_manager, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from lmms_eval.tasks import get_task_dict

    from shirg_eval.tasks import data_source

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionError("no network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # also skips lmms-eval's retry loop
    monkeypatch.setattr(datasets, "load_dataset", no_network)
    for task in HEADLINE:
        spec = specs.SPECS[task]
        monkeypatch.delenv(spec.env_var, raising=False)
        with pytest.raises(data_source.DataUnavailableError, match=f"{spec.hub_path}.*{spec.env_var}"):
            get_task_dict([task], task_manager)
