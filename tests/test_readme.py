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
