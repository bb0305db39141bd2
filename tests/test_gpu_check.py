"""The GPU run kit (gpu_kit/gpu_check.sh, gpu_check.py, gpu_summary.py, gpu_prep.py): its dry run end to end on the CPU, and the
parts a GPU run depends on that a dry run does not reach (time limits, stale or missing wheels, wheel trimming)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"kit_{name}", REPO / "gpu_kit" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")
gpu_prep = _load("gpu_prep")


@pytest.mark.slow
def test_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SHIRG_FIXTURES": str(FIXTURES), "PYTHON": sys.executable}
    # a generous budget: CI shares its CPU; the dry run needs about a minute on an idle 2-core machine
    proc = subprocess.run(["bash", str(REPO / "gpu_kit" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--budget",
                           "540"], env=env, capture_output=True, text=True, timeout=660)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert {n: s["status"] for n, s in summary["steps"].items()} == {
        n: "ok" for n in ("preflight", "fidelity_fp32", "fidelity_bf16", "bench", "throughput", "harness")}
    res = summary["results"]
    for name in ("fidelity_fp32", "fidelity_bf16"):
        counts = res[name]["counts"]
        assert counts["passed"] >= 8 and counts["failed"] == counts["error"] == 0, (name, counts)
    props = {k for c in res["fidelity_bf16"]["cases"] for k in c["properties"]}
    assert {"rel_l2_vision_features", "rel_l2_logits", "ids_agreeing_with_golden"} <= props
    bench = res["bench"]
    assert bench["status"] == "complete" and set(bench["variants"]) == {"lavida_384", "lavida_672", "shirg_fixed",
                                                                         "pool_k"}
    assert len(bench["cells"]) == 12 and bench["model"].startswith("tiny dims, random init")
    assert res["harness"]["docs"] >= 1
    tp = res["throughput"]
    assert set(tp["throughput"]["cells"]) == {"b1", "b1|compiled", "b2", "b2|compiled"}
    assert tp["throughput"]["compile_stats"]["frames_compiled"] > 0 and tp["floor"]["floor_ms"] > 0
    assert "b2 / b1 answers per s" in tp["throughput"]["ratios"]
    # at most 8 files, plain names, no folders: what the device tool brings back; the raw files in one archive
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and all(p.is_file() for p in out.iterdir()), names
    import tarfile

    with tarfile.open(out / "gpu_check_raw.tar.gz") as tar:
        assert set(tar.getnames()) == {"fidelity_fp32.xml", "fidelity_bf16.xml", "bench.json", "throughput.json",
                                       "harness.json"}
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check: dry-run") and "shirg_fixed / lavida_672 latency" in md
    assert "harness overhead" in md and "torch" in md and "| test_generation[set_A] | passed |" in md
    printed = proc.stdout[proc.stdout.rindex("# GPU check: dry-run"):]  # the compact summary printed last
    assert "worst measured: rel_l2_" in printed and "rel_l2_logits" in printed and "| test_generation" not in printed
    assert len(printed) < 12000 and "| shirg_fixed / lavida_384 latency" in printed
    assert "## throughput" in printed and "weight-read floor" in printed


def test_step_time_limit_kills_the_whole_process_group(tmp_path):
    run = gpu_check.Run(tmp_path, budget_s=60, dry_run=True)
    marker = tmp_path / "grandchild_alive"
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text(f"import time\ntime.sleep(6)\nopen({str(marker)!r}, 'w').close()\n")
    script = ("import subprocess, sys, time; print('started', flush=True); "
              f"subprocess.Popen([sys.executable, {str(grandchild)!r}]); time.sleep(60)")
    t0 = time.monotonic()
    result = run.run(gpu_check.Step("sleepy", 2, [sys.executable, "-c", script]), reserve_s=0)
    assert time.monotonic() - t0 < 20
    assert result["status"].startswith("timed out after 2 s") and "started" in result["tail"]
    time.sleep(7)
    assert not marker.exists()  # the grandchild went with its parent
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["steps"]["sleepy"]["status"].startswith("timed out")
    assert "| sleepy | timed out" in (tmp_path / "gpu_check.md").read_text()


def test_budget_skips_steps_that_cannot_fit(tmp_path):
    run = gpu_check.Run(tmp_path, budget_s=12, dry_run=True)
    result = run.run(gpu_check.Step("late", 100, [sys.executable, "-c", "print(1)"]))
    assert result["status"].startswith("skipped:")


def test_preflight_stops_at_once_naming_what_is_missing(tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "gpu_kit" / "gpu_check.py"), "--dry-run", "--out", str(tmp_path),
                           "--fixtures", str(tmp_path / "nowhere"), "--skip-harness"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t0 < 60
    assert "no golden fixtures under" in proc.stdout and "make gpu-prep" in proc.stdout
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["steps"]["preflight"]["status"].startswith("failed: ")
    assert set(summary["steps"]) == {"preflight"} and summary["env"]["torch"]


def _kit_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "gpu_kit").mkdir(parents=True)
    for name in ("gpu_check.sh", "gpu_prep.py", "gpu_check.py", "gpu_summary.py"):
        shutil.copy(REPO / "gpu_kit" / name, root / "gpu_kit" / name)
    return root


def test_gpu_mode_without_wheels_or_with_stale_ones_refuses(tmp_path):
    root = _kit_copy(tmp_path)
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(root / "gpu_kit" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "run 'make gpu-prep'" in proc.stderr
    (root / ".gpu" / "wheels").mkdir(parents=True)
    (root / ".gpu" / "wheels" / "shirg_eval-0.1.0-py3-none-any.whl").write_bytes(b"")
    proc = subprocess.run(["bash", str(root / "gpu_kit" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "manifest.json is missing" in proc.stderr
    (root / ".gpu" / "manifest.json").write_text(json.dumps({"source_sha256": "0" * 64,
                                                             "project_wheel": "shirg_eval-0.1.0-py3-none-any.whl"}))
    proc = subprocess.run(["bash", str(root / "gpu_kit" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "built from other sources than this tree" in proc.stderr


def test_source_hash_follows_the_sources(tmp_path):
    root = tmp_path / "src"
    (root / "shirg_eval").mkdir(parents=True)
    (root / "shirg_eval" / "a.py").write_text("x = 1\n")
    (root / "pyproject.toml").write_text("[project]\n")
    first = gpu_prep.source_hash(root)
    (root / "shirg_eval" / "__pycache__").mkdir()
    (root / "shirg_eval" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"\0")
    assert gpu_prep.source_hash(root) == first  # caches do not count
    (root / "shirg_eval" / "a.py").write_text("x = 2\n")
    assert gpu_prep.source_hash(root) != first


def test_pycocoevalcap_trim_keeps_python_and_a_consistent_record(tmp_path):
    wheel = tmp_path / "pycocoevalcap-1.2-py3-none-any.whl"
    files = {"pycocoevalcap/cider/cider.py": b"class Cider: pass\n", "pycocoevalcap/spice/spice-1.0.jar": b"J" * 1000,
             "pycocoevalcap/meteor/data/paraphrase-en.gz": b"G" * 1000,
             "pycocoevalcap-1.2.dist-info/METADATA": b"Name: pycocoevalcap\nVersion: 1.2\n",
             "pycocoevalcap-1.2.dist-info/WHEEL": b"Wheel-Version: 1.0\n"}
    record = "".join(f"{n},sha256=x,{len(b)}\n" for n, b in files.items()) + "pycocoevalcap-1.2.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
        z.writestr("pycocoevalcap-1.2.dist-info/RECORD", record)
    gpu_prep.trim_pycocoevalcap(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        kept = z.read("pycocoevalcap-1.2.dist-info/RECORD").decode()
    assert names == {"pycocoevalcap/cider/cider.py", "pycocoevalcap-1.2.dist-info/METADATA",
                     "pycocoevalcap-1.2.dist-info/WHEEL", "pycocoevalcap-1.2.dist-info/RECORD"}
    assert ".jar" not in kept and "cider.py" in kept


def test_device_command_fits_the_tool():
    cmd = gpu_prep.device_command()
    assert len(cmd) <= 2000 and "gpu_kit/gpu_check.sh" in cmd and "$OUT" in cmd


@pytest.mark.parametrize(("env", "message"), [
    ({"SHIRG_TEST_DEVICE": "cuda"}, "sees no CUDA device"),
    ({"SHIRG_TEST_DTYPE": "float16"}, "SHIRG_TEST_DTYPE='float16'"),
])
def test_fidelity_device_options_are_checked(env, message):
    if env.get("SHIRG_TEST_DEVICE") == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                           "tests/test_fidelity.py"], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_kit_ships_the_pillow_the_goldens_were_made_with():
    """The H200 run of 2026-11-27 had Pillow < 13: its horizontal-first resampling put view 0 of set_A's extra1
    (300x520 -> 384x384, one axis grows, the other shrinks) up to 21 grey levels away from the goldens, which
    Pillow 13.0.0 made. The kit's wheel (first on PYTHONPATH) and the project's floor pin that version."""
    import tomllib

    made = {json.loads((s / "meta.json").read_text())["versions"]["pillow"] for s in FIXTURES.glob("set_*")}
    if not made:
        pytest.skip(f"no golden fixtures at {FIXTURES}")
    assert {f"pillow=={v}" for v in made} == {gpu_prep.PILLOW_PIN} and gpu_prep.PILLOW_PIN in gpu_prep.WHEELS
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in deps if d.startswith("pillow"))
    assert floor == f"pillow>={max(made).split('.')[0]}.0", floor


def test_the_workplace_command_still_runs_the_kit(tmp_path):
    """``bash bench/gpu_check.sh`` (the command the workplace's GPU instructions name) forwards to gpu_kit/."""
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--only", "preflight", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "gpu_check.json").read_text())["kit"] == "gpu_kit/gpu_check.sh"
