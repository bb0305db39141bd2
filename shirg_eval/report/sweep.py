"""The sweep runner behind ``shirg-sweep`` (``shirg_eval/cli/sweep.py``): a YAML grid of lmms-eval cells, run
resumably, then the leaderboard.

The YAML format and its checks: ``sweep_config`` (and ``sweep_safety``). Every cell folder gets a ``cell.json``
({cell, model, model_args, lora, controls, sweep}) that the leaderboard reads.

A cell is complete when its folder holds a ``.complete`` marker (written after a successful run) and a
results.json covering all its tasks; complete cells are skipped, so an interrupted sweep resumes where it
stopped. A failed cell is reported and the sweep goes on; the exit status is nonzero if any cell failed. While a
cell runs, its folder's lock is held by the sweep and by its lmms_eval child, so a second sweep over the same
output root leaves it alone, even if the first sweep was killed and its child still runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from shirg_eval.report import sweep_safety as safety
from shirg_eval.report.results import CELL_FILE, find_results_files
from shirg_eval.report.sweep_config import (  # noqa: F401 - re-exported: the sweep API in one import
    Cell,
    Sweep,
    cell_command,
    fmt_value,
    load_sweep,
    parse_overrides,
    task_list,
)
from shirg_eval.run_lock import RunLock, RunLockedError

MARKER = ".complete"
CELL_LOCK = ".cell.lock"  # held by the sweep process that runs the cell


def default_lmms_eval_cmd() -> list[str]:
    script = Path(sys.executable).with_name("lmms_eval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shirg_eval.cli.lmms_eval"]


def write_cell_file(cell: Cell, out_dir: Path, sweep_name: str) -> None:
    """``cell.json``: what the cell is and which cell it controls (read by the leaderboard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"cell": cell.name, "model": cell.model, "model_args": cell.model_args, "lora": cell.lora,
            "controls": cell.controls, "sweep": sweep_name}
    (out_dir / CELL_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def cell_dir(sweep: Sweep, cell: Cell) -> Path:
    """``<output_root>/<cell name>``, never anywhere else (names are checked at load; this guards code paths
    that build a Cell by hand)."""
    safety.check_cell_name(cell.name, f"sweep {sweep.name}")
    root = sweep.output_root.resolve()
    out = (root / cell.name).resolve()
    if out.parent != root:
        raise safety.SweepInputError(f"cell {cell.name!r} resolves to {out}, outside output_root {root}")
    return sweep.output_root / cell.name


def is_complete(cell: Cell, out_dir: Path) -> bool:
    return (out_dir / MARKER).exists() and set(cell.tasks) <= _covered(out_dir)


def _set_aside(out_dir: Path) -> None:
    """Move a previous incomplete attempt into ``.previous/`` (hidden folders are ignored by the leaderboard)."""
    leftovers = (
        [p for p in out_dir.iterdir() if not p.name.startswith(".") and p.name != CELL_FILE] if out_dir.exists() else []
    )
    if not leftovers:
        return
    dest = out_dir / ".previous" / time.strftime("%Y%m%d_%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for p in leftovers:
        p.rename(dest / p.name)


class Runner:
    """Runs cells in order; one instance per worker (GPU)."""

    def __init__(self, sweep: Sweep, base_cmd: Sequence[str], total: int, verbose: bool = False) -> None:
        self.sweep, self.base_cmd, self.total, self.verbose = sweep, list(base_cmd), total, verbose
        self.failed: list[str] = []
        self.busy: list[str] = []  # cells another sweep is running
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.stop = threading.Event()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def run_cell(self, idx: int, cell: Cell, env_extra: dict[str, str] | None = None) -> None:
        """Run one cell, holding its folder's lock: a second sweep over the same output root (a rerun started
        while this one runs) must not set aside or overwrite a cell in progress."""
        out_dir = cell_dir(self.sweep, cell)
        lock = RunLock(out_dir / CELL_LOCK, f"cell {cell.name} ({out_dir})",
                       "Another shirg-sweep is running this cell: wait for it, or give this one another "
                       "--output-root.")
        try:
            lock.acquire()
        except RunLockedError as err:
            self.say(f"[{idx + 1}/{self.total}] {cell.name} ... not run: {err}")
            with self.lock:
                self.failed.append(cell.name)
                self.busy.append(cell.name)
            return
        try:
            self._run_cell(idx, cell, out_dir, env_extra, lock)
        finally:
            lock.release()

    def _run_cell(self, idx: int, cell: Cell, out_dir: Path, env_extra: dict[str, str] | None,
                  lock: RunLock) -> None:
        head = f"[{idx + 1}/{self.total}] {cell.name}"
        cmd = cell_command(cell, out_dir, self.base_cmd)
        if is_complete(cell, out_dir):
            note = (
                ""
                if _marker_command(out_dir) in (None, cmd)
                else " (ran with a different command; delete its .complete to rerun)"
            )
            write_cell_file(cell, out_dir, self.sweep.name)  # metadata only: refreshes `controls`
            self.say(f"{head} ... complete, skipped{note}")
            return
        _set_aside(out_dir)
        write_cell_file(cell, out_dir, self.sweep.name)
        env = {**os.environ, **(env_extra or {})}
        gpu = f" (CUDA_VISIBLE_DEVICES={env_extra['CUDA_VISIBLE_DEVICES']})" if env_extra else ""
        self.say(f"{head}{gpu} ... running: {shlex.join(cmd)}")
        t0 = time.monotonic()
        log_path = out_dir / "lmms_eval.log"
        with log_path.open("wb") as log:
            try:
                # The child inherits the locked descriptor: the cell stays locked while it runs, even if this
                # sweep is killed first.
                proc = subprocess.Popen(
                    cmd,
                    stdout=None if self.verbose else log,
                    stderr=subprocess.STDOUT if not self.verbose else None,
                    env=env,
                    pass_fds=(lock.fileno(),),
                )
            except (OSError, ValueError) as err:  # e.g. the command is missing, or an argument list too long
                self.say(f"{head} ... FAILED to start: {type(err).__name__}: {err}")
                with self.lock:
                    self.failed.append(cell.name)
                return
            with self.lock:
                self.procs.add(proc)
            try:
                rc = proc.wait()
            except KeyboardInterrupt:  # single-worker mode: stop the child before unwinding
                self.terminate()
                raise
            with self.lock:
                self.procs.discard(proc)
        secs = time.monotonic() - t0
        if self.stop.is_set():
            return
        if rc == 0 and set(cell.tasks) <= _covered(out_dir):
            (out_dir / MARKER).write_text(
                json.dumps(
                    {
                        "command": cmd,
                        "seconds": round(secs, 1),
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
            self.say(f"{head} ... done in {secs:.0f} s")
            return
        why = f"exit {rc}" if rc else "no results.json covering all tasks"
        tail = _tail(log_path)
        self.say(
            f"{head} ... FAILED ({why}) after {secs:.0f} s; log: {log_path}" + (f"\n{tail}" if tail else "")
        )
        with self.lock:
            self.failed.append(cell.name)

    def terminate(self) -> None:
        self.stop.set()
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _covered(out_dir: Path) -> set[str]:
    covered: set[str] = set()
    for f in find_results_files([out_dir]):
        try:
            covered |= set(json.loads(f.read_text(encoding="utf-8")).get("results") or {})
        except (OSError, json.JSONDecodeError):
            continue
    return covered


def _marker_command(out_dir: Path) -> list[str] | None:
    try:
        return json.loads((out_dir / MARKER).read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text[-lines:])


def dry_run(sweep: Sweep, cells: Sequence[tuple[int, Cell]], base_cmd: list[str]) -> None:
    """Print each cell's command (and whether it is complete, or a control), running nothing."""
    total = len(sweep.cells)
    for k, c in cells:
        state = " (complete, would skip)" if is_complete(c, cell_dir(sweep, c)) else ""
        state += f" (controls {c.controls})" if c.controls else ""
        print(f"[{k + 1}/{total}] {c.name}{state}: {shlex.join(cell_command(c, cell_dir(sweep, c), base_cmd))}")


def run_cells(sweep: Sweep, cells: Sequence[tuple[int, Cell]], base_cmd: list[str], gpus: Sequence[str] = (),
              verbose: bool = False) -> Runner:
    """Run ``cells`` ((index, cell) pairs), one worker per GPU when several are named; returns the runner (its
    ``failed`` and ``busy`` cells). On Ctrl-C the running cells are stopped and ``KeyboardInterrupt`` goes on."""
    runner = Runner(sweep, base_cmd, len(sweep.cells), verbose=verbose)
    try:
        if len(gpus) > 1:
            workers = []
            for j, gpu in enumerate(gpus):
                mine = list(cells[j :: len(gpus)])

                def work(mine: list[tuple[int, Cell]] = mine, gpu: str = gpu) -> None:
                    for k, c in mine:
                        if runner.stop.is_set():
                            return
                        runner.run_cell(k, c, {"CUDA_VISIBLE_DEVICES": gpu})

                workers.append(threading.Thread(target=work, daemon=True))
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):  # join with a timeout so Ctrl-C reaches us
                for w in workers:
                    w.join(timeout=0.2)
        else:
            env = {"CUDA_VISIBLE_DEVICES": gpus[0]} if gpus else None
            for k, c in cells:
                runner.run_cell(k, c, env)
    except KeyboardInterrupt:
        runner.terminate()
        raise
    return runner


def build_leaderboard(sweep: Sweep, n_boot: int = 2000) -> bool:
    """The sweep's ``leaderboard.md`` and plots in its output root, printed; without deltas if the baseline
    cannot be used. False when no leaderboard could be built."""
    from shirg_eval.report.publish import LeaderboardArgs, run_leaderboard
    from shirg_eval.report.table import LeaderboardError

    out = sweep.output_root / "leaderboard.md"
    for baseline in dict.fromkeys([sweep.baseline, None]):
        try:
            run_leaderboard(LeaderboardArgs([sweep.output_root], baseline=baseline, output=out,
                                            plots=sweep.output_root / "plots", n_boot=n_boot))
            print(
                f"shirg-sweep: leaderboard at {out}, plots in {sweep.output_root / 'plots'}", file=sys.stderr
            )
            print(out.read_text(encoding="utf-8"))
            return True
        except LeaderboardError as exc:
            print(f"shirg-sweep: leaderboard with baseline {baseline!r} not built: {exc}", file=sys.stderr)
    return False
