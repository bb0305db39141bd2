"""The README's Python API example runs as written (with a generated image and a temporary checkpoint path)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_runs(tmp_path, monkeypatch, capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    Image.new("RGB", (400, 300), (240, 240, 240)).save(tmp_path / "chart.png")
    code = code.replace('"/tmp/lavida-tiny"', repr(str(tmp_path / "lavida-tiny")))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) >= 2  # the decoded answer and the pipeline's answer (random text may hold newlines)


def test_readme_trainer_section_lists_every_flag_and_the_tiny_base():
    import yaml

    from shirg_eval.training.config import TrainConfig

    text = README.read_text()
    section = text[text.index("## Train the LoRA"):]
    section = section[: section.index("\n## ", 3)]
    missing = [key for key in TrainConfig.valid_keys() if f"`{key}`" not in section]
    assert not missing, f"README 'Train the LoRA' does not list: {missing}"
    tiny = yaml.safe_load((README.parent / "configs" / "train" / "tiny_cpu.yaml").read_text())
    # The commands the README gives make exactly what tiny_cpu.yaml reads.
    assert f"shirg-make-tiny {tiny['pretrained']}" in section
    synth = re.search(r"shirg-synth --out (\S+) --what lcs", section)
    assert synth and tiny["data"]["json"].startswith(f"{synth.group(1)}/lcs/")
    assert tiny["data"]["image_folder"] == f"{synth.group(1)}/lcs"


def test_readme_lists_every_model_arg():
    from dataclasses import fields

    from shirg_eval.harness.model_args import ModelArgs

    text = README.read_text()
    paragraph = text[text.index("`--model_args` (all optional)"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    missing = [f.name for f in fields(ModelArgs) if f"`{f.name}`" not in paragraph]
    assert not missing, f"README's --model_args paragraph does not list: {missing}"


def test_reliability_table_names_real_tests():
    """Every test the README's reliability catalogue names exists, so the table cannot drift from the suite."""
    text = README.read_text()
    section = text[text.index("## Reliability"):]
    named = re.findall(r"`(test_\w+\.py)::(\w+)`", section)
    short = re.findall(r"`::(\w+)`", section)
    assert len(named) >= 20 and short
    tests_dir = README.parent / "tests"
    sources = {name: (tests_dir / name).read_text() for name, _ in named}
    for name, func in named:
        assert f"def {func}(" in sources[name], f"{name}::{func} named in the README does not exist"
    every = "".join(sources.values())
    for func in short:
        assert f"def {func}(" in every, f"::{func} named in the README does not exist"
