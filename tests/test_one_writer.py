"""One writer per run folder, across real processes; kill -9 never leaves a stuck lock; interrupted torch
extension builds are named instead of hanging the next launch (README, "Reliability")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shirg_eval.run_lock import RunLock, RunLockedError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_YAML = REPO / "configs" / "train" / "tiny_cpu.yaml"

HOLD = """
import sys, time
from shirg_eval.run_lock import RunLock
RunLock(sys.argv[1], "test holder", "").acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(lock_path: Path) -> subprocess.Popen[str]:
    """Another process that holds ``lock_path`` through the same code the runs use."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_lock_refuses_a_second_process_names_it_and_dies_with_kill_9(tmp_path):
    lock_path = tmp_path / "run" / ".writer.lock"
    holder = _holder(lock_path)
    try:
        with pytest.raises(RunLockedError, match=rf"another process is writing there \(pid {holder.pid} on .*started "
                                                 r"20\d\d-.*\)\. fix it"):
            RunLock(lock_path, "run folder", "fix it").acquire()
    finally:
        _kill(holder)
    with RunLock(lock_path, "run folder", "fix it") as lock:  # the kernel released it with the killed process
        assert lock.held
        record = json.loads(lock_path.read_text())
        assert record["pid"] == os.getpid()


def test_lock_is_shared_within_one_process(tmp_path):
    first = RunLock(tmp_path / "l", "x", "").acquire()
    second = RunLock(tmp_path / "l", "x", "").acquire()  # the same process is the same writer
    first.release()
    holder = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", ""), str(tmp_path / "l")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.returncode != 0 and "another process is writing there" in holder.stderr  # still held by `second`
    second.release()


def test_a_symlink_is_never_followed_or_overwritten(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".writer.lock").symlink_to(victim)
    with pytest.raises(RunLockedError, match="is a symlink, not a lock file: remove it"):
        RunLock(tmp_path / "run" / ".writer.lock", "run", "").acquire()
    assert victim.read_text() == "precious"
    (tmp_path / "dir.lock").mkdir()
    with pytest.raises((RunLockedError, IsADirectoryError)):
        RunLock(tmp_path / "dir.lock", "run", "").acquire()


@pytest.mark.slow
def test_second_training_into_the_same_output_dir_is_refused(tiny_checkpoint, tmp_path):
    """A real trainer holds its output_dir; a second real trainer started meanwhile exits 2 naming the first one's
    pid and start time, and writes nothing there."""
    from test_training import make_data

    data = make_data(tmp_path / "data", n=4)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "train" / "lora.py"), "--config", str(TINY_YAML), "--pretrained",
           str(tiny_checkpoint), "--data.json", str(data), "--data.image_folder", str(data.parent), "--output_dir",
           str(out), "--variant", "lavida_384", "--max_steps", "100000", "--save_steps", "100000", "--progress",
           "false"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() or '"start"' not in (out / "metrics.jsonl").read_text():
            assert first.poll() is None, "the first training exited early"
            assert time.time() < deadline, "the first training wrote no start record within 120 s"
            time.sleep(0.1)
        second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first training ended before the second was refused: inconclusive"
    finally:
        _kill(first)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"another process is writing there (pid {first.pid} on" in second.stderr and "started" in second.stderr
    starts = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 1


def test_second_evaluation_into_the_same_journal_is_refused(tmp_path):
    from shirg_eval.harness.journal import AnswerJournal

    journal = tmp_path / ".shirg_journal"
    holder = _holder(journal / "writer-rank0.lock")
    try:
        with pytest.raises(RunLockedError, match=rf"evaluation journal .*pid {holder.pid} .*another --output_path "
                                                 r"\(or journal= in --model_args\)"):
            AnswerJournal(journal, {"variant": "lavida"}, rank=0)
        other_rank = AnswerJournal(journal, {"variant": "lavida", "rank": 1}, rank=1)  # data-parallel shards
        other_rank.close()
    finally:
        _kill(holder)
    AnswerJournal(journal, {"variant": "lavida"}, rank=0).close()


@pytest.mark.slow
def test_lmms_eval_into_a_folder_being_written_fails_with_the_message(tmp_path, tiny_checkpoint):
    from shirg_eval.cli.synth import main as synth

    synth(["--out", str(tmp_path / "data"), "--n", "4", "--what", "chartqa"])
    env = dict(os.environ, SHIRG_CHARTQA_PATH=str(tmp_path / "data" / "chartqa" / "test.parquet"),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = tmp_path / "run"
    holder = _holder(out / ".shirg_journal" / "writer-rank0.lock")
    try:
        proc = subprocess.run([str(BIN / "lmms_eval"), "--model", "lavida_384", "--model_args",
                               f"pretrained={tiny_checkpoint},gen_length=4", "--tasks", "chartqa_200", "--limit", "1",
                               "--output_path", str(out), "--log_samples"], env=env, capture_output=True, text=True,
                              timeout=600)
    finally:
        _kill(holder)
    assert proc.returncode != 0
    assert f"another process is writing there (pid {holder.pid}" in proc.stderr
    assert not list(out.rglob("*_results.json"))


# ------------------------------------------------------------------------------------------ JIT build locks
def test_interrupted_extension_build_lock_is_named(tmp_path):
    from shirg_eval.training.build_locks import (
        StaleBuildLockError,
        check_stale_build_locks,
        stale_build_locks,
    )

    root = tmp_path / "torch_extensions"
    lock = root / "py311_cpu" / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    check_stale_build_locks(root)  # no lock: nothing to say
    lock.touch()  # what a build killed half-way leaves
    check_stale_build_locks(root)  # young: perhaps a build on another machine sharing the folder; a warning only
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.raises(StaleBuildLockError, match=rf"no process here holds: {lock}\. .*delete them \(rm {lock}\)"):
        check_stale_build_locks(root)
    # A build in progress keeps its lock open: not stale.
    builder = subprocess.Popen([sys.executable, "-c", f"f = open({str(lock)!r}); print('open', flush=True); "
                                "import time; time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "open"
        assert stale_build_locks(root) == []
    finally:
        _kill(builder)
    assert stale_build_locks(root) == [lock]


def test_cpu_training_does_not_jit_build_the_shared_memory_op():
    import importlib

    from shirg_eval.training.distributed import SHM_OP, skip_cpu_shm_op

    ds_torch = importlib.import_module("deepspeed.comm.torch")  # the package re-exports a `torch` name

    skip_cpu_shm_op()
    assert ds_torch.build_shm_op() is None  # DeepSpeed's own check now skips the ~30 s g++ build
    import deepspeed.ops

    assert deepspeed.ops.__compatible_ops__[SHM_OP] is False


def test_a_sweep_never_sets_aside_a_cell_that_another_sweep_is_running(tmp_path, capsys):
    """Two shirg-sweep processes over one output root: the cell one of them runs is left alone by the other
    (reported as not run, exit 1), the free cells run."""
    import shlex

    import yaml

    from shirg_eval.cli import sweep as sweep_cli
    from shirg_eval.report import sweep as sw

    fake = tmp_path / "fake.py"
    fake.write_text("import sys, pathlib\nargs = sys.argv[1:]\nout = pathlib.Path(args[args.index('--output_path') + 1])"
                    "\nout.mkdir(parents=True, exist_ok=True)\n(out / 'ran').write_text('yes')\n")
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"tasks": ["chartqa_200"], "output_root": str(tmp_path / "out"),
                                   "cells": [{"name": "busy", "model": "lavida"}, {"name": "free", "model": "pool_k"}]}))
    (tmp_path / "out" / "busy").mkdir(parents=True)
    (tmp_path / "out" / "busy" / "partial_results.json").write_text("{}")  # the other sweep's cell in progress
    holder = _holder(tmp_path / "out" / "busy" / sw.CELL_LOCK)
    try:
        rc = sweep_cli.main([str(cfg), "--lmms-eval-cmd", shlex.join([sys.executable, str(fake)]), "--no-leaderboard"])
    finally:
        _kill(holder)
    assert rc == 1
    out = capsys.readouterr().out
    assert f"busy ... not run: cell busy ({tmp_path / 'out' / 'busy'}): another process is writing there (pid " \
           f"{holder.pid}" in out
    assert (tmp_path / "out" / "busy" / "partial_results.json").exists()  # not moved into .previous/
    assert not (tmp_path / "out" / "busy" / ".previous").exists() and not (tmp_path / "out" / "busy" / "ran").exists()
    assert (tmp_path / "out" / "free" / "ran").exists()


def test_a_killed_sweeps_running_cell_stays_locked_until_its_child_exits(tmp_path):
    """kill -9 of shirg-sweep leaves its lmms_eval child running: the child holds the cell's lock too (the
    inherited descriptor), so a rerun cannot set the running cell aside."""
    import shlex

    import yaml

    from shirg_eval.report import sweep as sw

    fake = tmp_path / "fake.py"
    fake.write_text("import sys, pathlib, time\nargs = sys.argv[1:]\n"
                    "out = pathlib.Path(args[args.index('--output_path') + 1])\n"
                    "(out / 'child_started').write_text('yes')\ntime.sleep(600)\n")
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"tasks": ["chartqa_200"], "output_root": str(tmp_path / "out"),
                                   "cells": [{"name": "c", "model": "lavida"}]}))
    sweep = subprocess.Popen([sys.executable, "-m", "shirg_eval.cli.sweep", str(cfg), "--lmms-eval-cmd",
                              shlex.join([sys.executable, str(fake)]), "--no-leaderboard"],
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    started = tmp_path / "out" / "c" / "child_started"
    try:
        deadline = time.time() + 60
        while not started.exists():
            assert sweep.poll() is None and time.time() < deadline, "the cell's child never started"
            time.sleep(0.05)
        _kill(sweep)  # the child lives on
        with pytest.raises(RunLockedError):
            RunLock(tmp_path / "out" / "c" / sw.CELL_LOCK, "cell", "").acquire()
    finally:
        _kill(sweep)
        os.killpg(sweep.pid, signal.SIGKILL)  # the orphaned child (same session)
    deadline = time.time() + 30
    while True:  # the child's descriptor closes when the kernel reaps it
        try:
            RunLock(tmp_path / "out" / "c" / sw.CELL_LOCK, "cell", "").acquire().release()
            break
        except RunLockedError:
            assert time.time() < deadline, "the cell stayed locked after its child was killed"
            time.sleep(0.1)
