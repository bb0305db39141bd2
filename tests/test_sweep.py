"""shirg-sweep with a stand-in lmms_eval (tests/data/fake_lmms_eval.py) that logs every invocation."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shirg_eval.cli import sweep as sweep_cli
from shirg_eval.report import sweep as sw

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).parent / "data" / "fake_lmms_eval.py"


def _yaml(tmp_path: Path) -> Path:
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        f"""
tasks: [chartqa_200]
limit: 4
output_root: {tmp_path / "out"}
baseline: lavida
defaults: {{model_args: {{device: cpu}}}}
cells:
  - {{name: lavida, model: lavida}}
  - {{name: shirg_fixed, model: shirg_fixed, model_args: {{k: 768}}}}
  - {{name: pool_k, model: pool_k, model_args: {{k: 768}}, controls: shirg_fixed}}
"""
    )
    return cfg


def _sweep(tmp_path: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "shirg_eval.cli.sweep",
        str(_yaml(tmp_path)),
        "--lmms-eval-cmd",
        shlex.join([sys.executable, str(FAKE)]),
        "--n-boot",
        "100",
        *extra,
    ]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_LMMS_LOG": str(tmp_path / "calls.log"), **env}
    # A background job of a non-interactive shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the sweep the default disposition, as in a terminal.
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "calls.log"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _models(tmp_path: Path) -> list[str]:
    return [c["argv"][c["argv"].index("--model") + 1] for c in _calls(tmp_path)]


def test_interrupted_sweep_resumes_without_rerunning(tmp_path: Path) -> None:
    first = _sweep(tmp_path, "--no-leaderboard", FAKE_LMMS_INTERRUPT="shirg_fixed")
    assert first.returncode == 130, first.stderr
    assert _models(tmp_path) == ["lavida", "shirg_fixed"]
    assert (tmp_path / "out" / "lavida" / ".complete").exists()
    assert not (tmp_path / "out" / "shirg_fixed" / ".complete").exists()

    second = _sweep(tmp_path)
    assert second.returncode == 0, second.stderr
    assert _models(tmp_path) == ["lavida", "shirg_fixed", "shirg_fixed", "pool_k"]  # lavida not re-run
    assert "[1/3] lavida ... complete, skipped" in second.stdout
    assert "[2/3] shirg_fixed ... done in" in second.stdout and "[3/3] pool_k ... done in" in second.stdout
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "(baseline)" in board and "pool_k" in board
    assert (tmp_path / "out" / "plots" / "peak_memory.png").exists()
    cell = json.loads((tmp_path / "out" / "pool_k" / "cell.json").read_text())
    assert cell["cell"] == "pool_k" and cell["controls"] == "shirg_fixed" and cell["model_args"]["k"] == 768
    assert json.loads((tmp_path / "out" / "lavida" / "cell.json").read_text())["controls"] is None

    third = _sweep(tmp_path, "--no-leaderboard")
    assert third.returncode == 0 and len(_calls(tmp_path)) == 4  # everything complete: nothing runs


def test_failed_cell_reported_and_others_run(tmp_path: Path) -> None:
    res = _sweep(tmp_path, "--no-leaderboard", FAKE_LMMS_FAIL="shirg_fixed")
    assert res.returncode == 1
    assert _models(tmp_path) == ["lavida", "shirg_fixed", "pool_k"]
    assert "[2/3] shirg_fixed ... FAILED (exit 1)" in res.stdout and "fake failure" in res.stdout
    assert "1 cell(s) failed: shirg_fixed" in res.stderr
    assert not (tmp_path / "out" / "shirg_fixed" / ".complete").exists()


def test_dry_run_prints_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _yaml(tmp_path)
    assert (
        sweep_cli.main([str(cfg), "--dry-run", "--lmms-eval-cmd", "lmms_eval", "--model_args", "pretrained=/tiny"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    root = tmp_path / "out"
    assert out == [
        f"[1/3] lavida: lmms_eval --model lavida --model_args device=cpu,pretrained=/tiny --tasks chartqa_200 "
        f"--output_path {root / 'lavida'} --log_samples --limit 4",
        f"[2/3] shirg_fixed: lmms_eval --model shirg_fixed --model_args device=cpu,k=768,pretrained=/tiny "
        f"--tasks chartqa_200 --output_path {root / 'shirg_fixed'} --log_samples --limit 4",
        f"[3/3] pool_k (controls shirg_fixed): lmms_eval --model pool_k --model_args device=cpu,k=768,pretrained=/tiny --tasks chartqa_200 "
        f"--output_path {root / 'pool_k'} --log_samples --limit 4",
    ]
    assert not (tmp_path / "calls.log").exists() and not root.exists()


def test_shard_and_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_LMMS_LOG", str(tmp_path / "calls.log"))
    fake = shlex.join([sys.executable, str(FAKE)])
    cfg = _yaml(tmp_path)
    assert sweep_cli.main([str(cfg), "--lmms-eval-cmd", fake, "--shard", "1/2"]) == 0
    assert _models(tmp_path) == ["shirg_fixed"]
    assert sweep_cli.main([str(cfg), "--lmms-eval-cmd", fake, "--gpus", "0,1", "--no-leaderboard"]) == 0
    by_model = {m: c["cuda"] for m, c in zip(_models(tmp_path), _calls(tmp_path), strict=True)}
    assert by_model == {"shirg_fixed": None, "lavida": "0", "pool_k": "0"}  # shirg_fixed was already complete
    assert "[2/3] shirg_fixed ... complete, skipped" in capsys.readouterr().out


def test_yaml_configs_and_grid() -> None:
    abl = sw.load_sweep(ROOT / "configs" / "sweeps" / "ablations.yaml", {"pretrained": "/tiny"})
    cells = {c.name: c for c in abl.cells}
    assert cells["shirg_fixed_k512"].model_args == {"k": 512, "pretrained": "/tiny"}
    assert cells["shirg_fixed_k1024"].model == "shirg_fixed"
    assert cells["no_coverage"].model_args["coverage"] is False
    assert cells["lora_r64"].lora == "outputs/lora_r64_shirg_fixed"  # the trainer's output_dir (uses latest)
    assert "lora=outputs/lora_r32_shirg_fixed" in " ".join(sw.cell_command(cells["lora_r32"], Path("o"), ["x"]))
    road = sw.load_sweep(ROOT / "configs" / "sweeps" / "roadmap.yaml")
    assert [c.name for c in road.cells] == [
        "lavida",
        "lavida_384",
        "lavida_672",
        "shirg_original",
        "shirg_fixed",
        "pool_k",
        "random_k",
        "shirg_fixed_768",
        "pool_k_768",
        "random_k_768",
    ]
    controls = {c.name: c.controls for c in road.cells if c.controls}
    assert controls == {
        "pool_k": "shirg_fixed",
        "random_k": "shirg_fixed",
        "pool_k_768": "shirg_fixed_768",
        "random_k_768": "shirg_fixed_768",
    }
    assert road.baseline == "lavida" and road.tasks == ["chartqa_200", "docvqa_200"] and road.limit is None
    demo = sw.load_sweep(ROOT / "configs" / "sweeps" / "demo.yaml")
    assert demo.limit == 30 and [c.name for c in demo.cells] == [c.name for c in road.cells]
    assert all(c.limit == 30 for c in demo.cells) and demo.tasks == ["chartqa_reading", "docvqa_reading"]
    reference = sw.load_sweep(ROOT / "configs" / "sweeps" / "reference.yaml")
    assert [c.name for c in reference.cells] == [c.name for c in road.cells] + ["shirg_fixed_lora"]
    assert reference.limit is None and reference.tasks == demo.tasks


def test_demo_adds_the_reference_lora_cell(tmp_path):
    from shirg_eval.report.demo import sweep_config

    plain = sweep_config(tmp_path, None)
    assert plain.name == "demo.yaml" and not (tmp_path / "demo_sweep.yaml").exists()
    written = sweep_config(tmp_path, tmp_path / "adapter")
    demo, with_lora = sw.load_sweep(plain), sw.load_sweep(written)
    assert [c.name for c in with_lora.cells] == [c.name for c in demo.cells] + ["shirg_fixed_lora"]
    assert with_lora.cells[-1].model == "shirg_fixed" and with_lora.cells[-1].lora == str(tmp_path / "adapter")
    assert with_lora.limit == demo.limit and with_lora.tasks == demo.tasks


def test_ocr_sweep_is_the_roadmap_on_five_tasks() -> None:
    road = sw.load_sweep(ROOT / "configs" / "sweeps" / "roadmap.yaml")
    ocr = sw.load_sweep(ROOT / "configs" / "sweeps" / "ocr.yaml")
    five = ["chartqa_200", "docvqa_200", "infovqa_200", "textvqa_200", "ocrbench_200"]
    assert ocr.tasks == five and all(c.tasks == five for c in ocr.cells)
    assert [(c.name, c.model, c.model_args, c.controls) for c in ocr.cells] == [
        (c.name, c.model, c.model_args, c.controls) for c in road.cells]
    assert ocr.baseline == road.baseline and ocr.output_root != road.output_root
    assert sw.task_list("a, b,,c") == ["a", "b", "c"] and sw.task_list(["a"]) == ["a"]


def test_tasks_override_and_one_leaderboard_over_five_tasks(tmp_path: Path) -> None:
    five = "chartqa_200,docvqa_200,infovqa_200,textvqa_200,ocrbench_200"
    proc = _sweep(tmp_path, "--tasks", five)
    assert proc.returncode == 0, proc.stderr
    assert {c["argv"][c["argv"].index("--tasks") + 1] for c in _calls(tmp_path)} == {five}
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    for task, label in [("infovqa_200", "ANLS %"), ("textvqa_200", "VQA acc %"),
                        ("ocrbench_200", "OCRBench score %"), ("chartqa_200", "relaxed acc %")]:
        assert f"{task} {label}" in board, task
    plots = {p.stem for p in (tmp_path / "out" / "plots").glob("*.png")}
    assert {f"accuracy_vs_tokens_{t}" for t in five.split(",")} <= plots, sorted(plots)
