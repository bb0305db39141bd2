"""Bad input stops early with one message that names the problem and the fix (README, "Reliability")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from shirg_eval.harness.model_args import parse_model_args

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "train" / "tiny_cpu.yaml"


# ------------------------------------------------------------------------------------------ model_args
@pytest.mark.parametrize("value", [-5.0, -5, 0])
def test_negative_k_says_at_least_one(value):
    """lmms-eval parses "-5" as the float -5.0; it is an integer below 1, not a type error."""
    with pytest.raises(ValueError, match=r"model_args k must be >= 1, got -?\d+$"):
        parse_model_args("shirg_fixed", {"k": value})
    with pytest.raises(ValueError, match=r"k=1\.5 should be int, got float"):
        parse_model_args("shirg_fixed", {"k": 1.5})
    assert parse_model_args("shirg_fixed", {"k": 768.0}).k == 768


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine can use device=cuda")
def test_cuda_device_on_a_cpu_torch_names_the_fix():
    with pytest.raises(ValueError, match=r"device=cuda: this torch \(.*\) is built without CUDA\. Use device=cpu, or "
                                         r"install the CUDA build .*make setup GPU=1"):
        parse_model_args("lavida", {"device": "cuda"})
    with pytest.raises(ValueError, match="device=cuda:1: this torch"):
        parse_model_args("lavida", {"device": "cuda:1"})
    with pytest.raises(ValueError, match="device=gpu0: not a torch device"):
        parse_model_args("lavida", {"device": "gpu0"})
    assert parse_model_args("lavida", {"device": "cpu"}).device == "cpu"


def test_model_args_typo_stops_before_lmms_eval_builds_tasks(monkeypatch, capsys):
    import lmms_eval.__main__ as lmms_main

    from shirg_eval.cli import lmms_eval as cli

    def reached(*_args, **_kwargs):
        raise AssertionError("lmms-eval started building the tasks and the model")

    monkeypatch.setattr(lmms_main, "cli_evaluate", reached)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    assert cli.main(["--model", "shirg_fixed", "--model_args", "kk=5", "--tasks", "chartqa_200"]) == 2
    assert "unknown model_args ['kk']; valid: pretrained" in capsys.readouterr().err
    assert cli.main(["--model", "shirg_fixed", "--model_args", "k=-5", "--tasks", "chartqa_200"]) == 2
    assert "k must be >= 1, got -5" in capsys.readouterr().err
    for malformed in ("k=144,/etc", "k=\u00b2"):  # lmms-eval's own parser raises on these
        assert cli.main(["--model", "shirg_fixed", "--model_args", malformed, "--tasks", "chartqa_200"]) == 2
        assert "is not key=value,... with plain values" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ adapters
def test_unknown_peft_type_names_the_file_and_the_supported_types(tiny_model, tmp_path):
    from shirg_eval.model.adapters import AdapterError, load_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "shirg_adapter.json").write_text(json.dumps({"variant": "shirg_fixed"}))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "NOPE"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(AdapterError, match=rf"{adapter / 'adapter_config.json'}: peft_type 'NOPE' is not "
                                           r"supported; shirg-eval loads LORA adapters"):
        load_adapter(tiny_model, adapter)
    (adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match=r"adapter_config.json is not valid JSON"):
        load_adapter(tiny_model, adapter)


# ------------------------------------------------------------------------------------------ task data
def _task_manager():
    from lmms_eval.tasks import TaskManager

    import shirg_eval.tasks

    return TaskManager(include_path=str(Path(shirg_eval.tasks.__file__).parent), include_defaults=False)


def test_empty_parquet_says_it_has_no_rows(tmp_path, monkeypatch):
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"question": pd.Series([], dtype=str), "answer": pd.Series([], dtype=str),
                  "type": pd.Series([], dtype=str)}).to_parquet(empty)
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(empty))
    with pytest.raises(ValueError, match=r"empty.parquet has 0 rows: nothing to evaluate"):
        _task_manager().load_task_or_group(["chartqa_200"])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"")
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(garbage))
    with pytest.raises(ValueError, match=r"garbage.parquet is not a readable parquet file"):
        _task_manager().load_task_or_group(["chartqa_200"])


def test_byte_and_empty_questions_are_text_and_counted(monkeypatch):
    """A non-UTF-8 bytes question is decoded with U+FFFD (never asked as the repr b'...'); valid UTF-8 bytes are
    asked as written; empty questions are asked too. One warning per kind with the count."""
    from shirg_eval.tasks import subset
    from shirg_eval.tasks.inputs import doc_to_text

    warnings: list[str] = []
    monkeypatch.setattr(subset.log, "warning", warnings.append)
    texts = subset.question_texts([b"What is \xff\xfe the total?", "Caf\u00e9?".encode(), "", None, "ok?"],
                                  "chartqa_200")
    assert texts == ["What is \ufffd\ufffd the total?", "Caf\u00e9?", "", "", "ok?"]
    assert doc_to_text({"question": texts[0]}, {"post_prompt": "\nAnswer."}) == "What is \ufffd\ufffd the total?\nAnswer."
    assert warnings == ["chartqa_200: 1 of 5 questions are not valid UTF-8; decoded with U+FFFD in place of the "
                        "invalid bytes (fix the data's encoding to ask them as written)",
                        "chartqa_200: 2 of 5 questions are empty; the model is asked the instruction alone"]


def test_byte_question_column_reaches_the_prompt_as_text(tmp_path, monkeypatch):
    import io

    from PIL import Image

    from shirg_eval.tasks import subset
    from shirg_eval.tasks.inputs import doc_to_text

    png = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(png, format="PNG")
    frame = pd.DataFrame({"question": [b"How many \xff bars?", b"Which year?"], "answer": ["3", "2019"],
                          "type": ["human_test", "augmented_test"],
                          "image": [{"bytes": png.getvalue(), "path": None}] * 2})
    data = tmp_path / "test.parquet"
    frame.to_parquet(data)
    monkeypatch.setenv("SHIRG_CHARTQA_PATH", str(data))
    task = _task_manager().load_task_or_group(["chartqa_200"])["chartqa_200"]
    docs = list(task.test_docs())
    prompts = sorted(doc_to_text(d) for d in docs)
    assert prompts == ["How many \ufffd bars?", "Which year?"]
    assert not any("b'" in p for p in prompts) and all(d[subset.QUESTION_FIELD] in prompts for d in docs)


# ------------------------------------------------------------------------------------------ leaderboard
def test_leaderboard_on_a_missing_path_says_it_does_not_exist(tmp_path, capsys):
    from shirg_eval.cli.leaderboard import main

    assert main([str(tmp_path / "no" / "such" / "path")]) == 2
    assert "no/such/path: no such file or folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ trainer
def _train_main(argv: list[str], monkeypatch, rank: str | None = None) -> int:
    """trainer.main with DeepSpeed's start and the model load replaced by failures: an error reported here was
    found before anything heavy started."""
    from shirg_eval.training import trainer

    def too_late(*_args, **_kwargs):
        raise AssertionError("the trainer started DeepSpeed before reporting the bad input")

    monkeypatch.setattr(trainer, "setup_distributed", too_late)
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    with pytest.raises(SystemExit) as exc:
        trainer.main(["--config", str(TINY_YAML), *argv])
    return exc.value.code


def test_trainer_config_errors_come_before_deepspeed(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    from test_training import make_data

    data = make_data(tmp_path / "data", n=2)
    common = ["--pretrained", str(tiny_checkpoint), "--output_dir", str(tmp_path / "out"), "--data.image_folder",
              str(tmp_path)]
    cases = [
        (["--lr", "-1", "--data.json", str(data)], "lr must be > 0, got -1.0"),
        (["--lora_dropout", "1.5", "--data.json", str(data)], "lora_dropout must be in [0, 1)"),
        (["--data.json", str(tmp_path / "missing.json")], "missing.json does not exist"),
        (["--data.json", str(data), "--data.image_folder", str(tmp_path / "nope")], "nope does not exist"),
        (["--data.json", str(data), "--deepspeed", "configs/deepspeed/zero9.json"], "zero9.json does not exist"),
    ]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{")
    cases.append((["--data.json", str(bad_json)], "is not valid JSON"))
    no_images = tmp_path / "no_images.json"
    no_images.write_text(json.dumps([{"id": "a", "image": "gone.png", "conversations": [
        {"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}]))
    cases.append((["--data.json", str(no_images)], "no usable records (malformed 0, missing_image 1)"))
    for argv, message in cases:
        assert _train_main([*common, *argv], monkeypatch) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_trainer_error_is_printed_once_per_machine(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    """Rank 0 prints it; other ranks of its machine do not; the first rank of another node does, marked (a
    node-local path may be missing there alone)."""
    argv = ["--pretrained", str(tiny_checkpoint), "--output_dir", str(tmp_path / "out"), "--lr", "-1",
            "--data.json", str(tmp_path / "x.json")]
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _train_main(argv, monkeypatch, rank="1") == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert _train_main(argv, monkeypatch, rank="0") == 2
    assert capsys.readouterr().err.strip() == "error: lr must be > 0, got -1.0"
    assert _train_main(argv, monkeypatch, rank="2") == 2  # node 1's first rank
    assert capsys.readouterr().err.strip() == "error: [rank 2] lr must be > 0, got -1.0"


def test_batched_questions_without_keys_are_refused(tiny_checkpoint, tiny_model, tiny_tokenizer):
    """Each document of a batch needs its own key: otherwise its random draws depend on its batch-mates."""
    from PIL import Image

    from shirg_eval.pipeline import Question, ShirgPipeline

    pipe = ShirgPipeline(str(tiny_checkpoint), "random_k", model=tiny_model, tokenizer=tiny_tokenizer, k=64)
    image = Image.new("RGB", (64, 64), "white")
    with pytest.raises(ValueError, match="needs a sample_key on each"):
        pipe.answer_batch([Question(image, "a?"), Question(image, "b?", sample_key="doc-b")])
