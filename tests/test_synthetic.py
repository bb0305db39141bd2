"""Synthetic ChartQA / DocVQA / LCS rendering: determinism, schema, writers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from shirg_eval.data.synthetic import make_chartqa, make_docvqa, records_digest, render_lcs, write_dataset

CHARTQA_COLUMNS = {"type", "question", "answer", "image"}
DOCVQA_COLUMNS = {"questionId", "question", "question_types", "image", "docId", "ucsf_document_id",
                  "ucsf_document_page_no", "answers", "data_split"}
REPO = Path(__file__).resolve().parents[1]


def test_chartqa_deterministic_and_schema() -> None:
    a, b = make_chartqa(6, seed=3), make_chartqa(6, seed=3)
    assert records_digest(a) == records_digest(b)
    assert [r["image"] for r in a] == [r["image"] for r in b]  # byte-identical PNGs
    assert records_digest(make_chartqa(6, seed=4)) != records_digest(a)
    for r in a:
        assert set(r) == CHARTQA_COLUMNS
        assert isinstance(r["answer"], str) and r["answer"]
        assert r["question"].endswith("?")
        assert Image.open(io.BytesIO(r["image"])).size == (640, 480)
    assert [r["type"] for r in a] == ["human_test", "augmented_test"] * 3


def test_chartqa_text_independent_of_rendering_and_n() -> None:
    rendered = make_chartqa(4, seed=0)
    text = make_chartqa(8, seed=0, render=False)
    assert [(r["type"], r["question"], r["answer"]) for r in rendered] == [
        (r["type"], r["question"], r["answer"]) for r in text[:4]]
    assert all(r["image"] is None for r in text)


def test_chartqa_questions_unique_and_balanced() -> None:
    recs = make_chartqa(200, seed=0, render=False)
    keys = {(r["type"], r["question"], r["answer"]) for r in recs}
    assert len(keys) == 200
    assert sum(r["type"] == "human_test" for r in recs) == 100


def test_docvqa_deterministic_and_schema() -> None:
    a, b = make_docvqa(5, seed=1), make_docvqa(5, seed=1)
    assert records_digest(a) == records_digest(b)
    assert len(a) == 5
    for r in a:
        assert set(r) == DOCVQA_COLUMNS
        assert isinstance(r["questionId"], str) and isinstance(r["docId"], int)
        assert isinstance(r["answers"], list) and all(isinstance(x, str) for x in r["answers"]) and r["answers"]
        assert isinstance(r["question_types"], list)
        assert r["data_split"] == "val"
        assert Image.open(io.BytesIO(r["image"])).size == (800, 1000)
    assert len({r["questionId"] for r in make_docvqa(200, seed=0, render=False)}) == 200
    # Several questions share one document (and its page number), as in DocVQA.
    by_doc: dict[int, set[str]] = {}
    for r in make_docvqa(30, seed=0, render=False):
        by_doc.setdefault(r["docId"], set()).add(r["ucsf_document_page_no"])
    assert len(by_doc) < 30 and all(len(pages) == 1 for pages in by_doc.values())


def test_write_dataset_parquet_and_disk(tmp_path: Path) -> None:
    import datasets

    recs = make_chartqa(4, seed=0)
    path = write_dataset(recs, tmp_path / "pq")
    assert path.name == "test.parquet"
    ds = datasets.load_dataset("parquet", data_files={"test": str(path)})["test"]
    assert set(ds.column_names) == CHARTQA_COLUMNS
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds[0]["image"].size == (640, 480) and ds[0]["answer"] == recs[0]["answer"]

    doc_path = write_dataset(make_docvqa(3, seed=0), tmp_path / "disk", fmt="disk")
    dd = datasets.load_from_disk(str(doc_path))
    assert list(dd) == ["validation"]
    assert set(dd["validation"].column_names) == DOCVQA_COLUMNS
    assert dd["validation"][0]["answers"]

    with pytest.raises(ValueError):
        write_dataset(make_chartqa(2, seed=0, render=False), tmp_path / "x")
    with pytest.raises(ValueError):
        write_dataset(recs, tmp_path / "y", fmt="csv")


def test_render_lcs(tmp_path: Path) -> None:
    path = render_lcs(tmp_path, n=5, seed=0)
    assert path.name == "blip_laion_cc_sbu_558k.json"
    entries = json.loads(path.read_text())
    assert len(entries) == 5
    for e in entries:
        assert set(e) == {"id", "image", "conversations"}
        human, gpt = e["conversations"]
        assert human["from"] == "human" and "<image>" in human["value"]
        assert gpt["from"] == "gpt" and gpt["value"].endswith("background.")
        assert (tmp_path / e["image"]).is_file()
    first = (tmp_path / entries[0]["image"]).read_bytes()
    again = render_lcs(tmp_path / "again", n=5, seed=0)
    assert json.loads(again.read_text()) == entries
    assert (again.parent / entries[0]["image"]).read_bytes() == first


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shirg_eval.cli import synth

    assert synth.main(["--out", str(tmp_path), "--n", "2", "--what", "chartqa,docvqa"]) == 0
    out = capsys.readouterr().out
    assert "SHIRG_CHARTQA_PATH=" in out and "SHIRG_DOCVQA_PATH=" in out
    assert (tmp_path / "chartqa" / "test.parquet").is_file()
    assert (tmp_path / "docvqa" / "validation.parquet").is_file()


def test_committed_synthetic_manifests_match_generation() -> None:
    """The manifests in tasks/*/manifests describe exactly what `shirg-synth --seed 0 --n 200` renders."""
    import hashlib

    for task, recs, fields in [
        ("chartqa_200", make_chartqa(200, 0, render=False), lambda r: ["chartqa", r["type"], r["question"], r["answer"]]),
        ("docvqa_200", make_docvqa(200, 0, render=False),
         lambda r: ["docvqa", r["questionId"], r["question"], *sorted(r["answers"])]),
    ]:
        manifest = json.loads((REPO / "tasks" / task / "manifests" / "synthetic_seed0_n200.json").read_text())
        uids = [hashlib.sha1("\x1f".join(fields(r)).encode()).hexdigest()[:16] for r in recs]
        assert sorted(manifest["uids"]) == sorted(uids)
        assert manifest["dataset_fingerprint"] == hashlib.sha1("\n".join(sorted(uids)).encode()).hexdigest()
        assert manifest["seed"] == 0 and manifest["num_source_docs"] == 200
