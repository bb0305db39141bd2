"""``shirg-sweep``: run a YAML grid of lmms-eval cells, resumably, then build the leaderboard.

Sweep YAML::

    name: roadmap                      # optional
    tasks: [chartqa_200, docvqa_200]   # or "chartqa_200,docvqa_200"; `--tasks a,b` overrides it for every cell
    limit: null                        # or an int (passed as --limit)
    output_root: runs/roadmap          # each cell writes to <output_root>/<cell name>
    baseline: lavida                   # VARIANT[@LORA] for the final leaderboard (optional)
    defaults: {model_args: {...}}      # merged under every cell's model_args
    cells:
      - {name: shirg_fixed, model: shirg_fixed, model_args: {k: 768}, lora: null}
      - {name: pool_k, model: pool_k, model_args: {k: 912}, controls: shirg_fixed}
    grid:                              # optional shorthand: one cell per combination of the list values
      - {name: "shirg_fixed_k{k}", model: shirg_fixed, model_args: {coverage: true}, k: [512, 768, 1024]}

``controls: CELL`` declares the cell a control of another cell of the same sweep: it must feed the LM the same
number of visual tokens (tests/test_sweep_budgets.py checks the shipped sweeps on a real image), and the
leaderboard lists each control beside its reference with the token ratio and a "matched" mark only when the
two rows' mean token counts are equal. In a ``grid`` entry ``controls`` may name the budget like ``name`` does
(``controls: "shirg_fixed_k{k}"``). Every cell folder gets a ``cell.json`` ({cell, model, model_args,
lora, controls, sweep}) that the leaderboard reads.

A cell is complete when its folder holds a ``.complete`` marker (written after a successful run) and a
results.json covering all its tasks; complete cells are skipped, so an interrupted sweep resumes where it
stopped. A failed cell is reported and the sweep goes on; the exit status is nonzero if any cell failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shirg_eval.report.results import CELL_FILE, find_results_files

MARKER = ".complete"
CELL_KEYS = {"name", "model", "model_args", "lora", "tasks", "limit", "extra_args", "controls"}


@dataclass
class Cell:
    name: str
    model: str
    model_args: dict[str, Any]
    tasks: list[str]
    limit: int | None = None
    lora: str | None = None
    extra_args: list[str] = field(default_factory=list)
    controls: str | None = None  # name of the cell this one is a same-budget control of


@dataclass
class Sweep:
    tasks: list[str]
    output_root: Path
    cells: list[Cell]
    limit: int | None = None
    baseline: str | None = None
    name: str = "sweep"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _expand_grid(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``{model, name?, model_args?, k: [..], ...}``: list-valued extra keys are crossed into model_args."""
    axes = {k: v for k, v in entry.items() if k not in CELL_KEYS}
    names, values = list(axes), [v if isinstance(v, list) else [v] for v in axes.values()]
    out = []
    for combo in itertools.product(*values):
        params = dict(zip(names, combo, strict=True))
        cell = {k: v for k, v in entry.items() if k in CELL_KEYS}
        cell["model_args"] = {**(entry.get("model_args") or {}), **params}
        template = entry.get("name") or (
            entry["model"] + "".join(f"_{k}{_fmt_value(v)}" for k, v in params.items())
        )
        fields = {k: _fmt_value(v) for k, v in params.items()}
        cell["name"] = template.format(**fields)
        if entry.get("controls") is not None:  # e.g. "shirg_fixed_k{k}": the same-budget reference of each cell
            cell["controls"] = str(entry["controls"]).format(**fields)
        out.append(cell)
    return out


def task_list(value: Any) -> list[str]:
    """A sweep's tasks from a YAML list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(t).strip() for t in items if str(t).strip()]


def load_sweep(path: str | Path, overrides: dict[str, str] | None = None) -> Sweep:
    """Parse a sweep YAML; ``overrides`` (from ``--model_args``) win over every cell's model_args."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    tasks = task_list(spec.get("tasks"))
    if not tasks:
        raise ValueError(f"{path}: 'tasks' is empty")
    defaults = (spec.get("defaults") or {}).get("model_args") or {}
    raw_cells = list(spec.get("cells") or [])
    for entry in spec.get("grid") or []:
        raw_cells += _expand_grid(entry)
    cells, seen = [], set()
    for c in raw_cells:
        unknown = set(c) - CELL_KEYS
        if unknown:
            raise ValueError(f"{path}: cell {c.get('name')!r} has unknown keys {sorted(unknown)}")
        name = str(c.get("name") or c["model"])
        if name in seen:
            raise ValueError(f"{path}: duplicate cell name {name!r}")
        seen.add(name)
        args = {**defaults, **(c.get("model_args") or {}), **(overrides or {})}
        cells.append(
            Cell(
                name=name,
                model=str(c["model"]),
                model_args={k: v for k, v in args.items() if v is not None},
                tasks=list(c.get("tasks") or tasks),
                limit=c.get("limit", spec.get("limit")),
                lora=c.get("lora"),
                extra_args=[str(a) for a in c.get("extra_args") or []],
                controls=None if c.get("controls") is None else str(c["controls"]),
            )
        )
    for cell in cells:
        if cell.controls is not None and (cell.controls == cell.name or cell.controls not in seen):
            raise ValueError(
                f"{path}: cell {cell.name!r} controls {cell.controls!r}, which is not another cell of this sweep; "
                f"cells: {', '.join(c.name for c in cells)}"
            )
    return Sweep(
        tasks=tasks,
        output_root=Path(spec.get("output_root") or f"runs/{Path(path).stem}"),
        cells=cells,
        limit=spec.get("limit"),
        baseline=spec.get("baseline"),
        name=str(spec.get("name") or Path(path).stem),
    )


def default_lmms_eval_cmd() -> list[str]:
    script = Path(sys.executable).with_name("lmms_eval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shirg_eval.harness.cli"]


def cell_command(cell: Cell, out_dir: Path, base_cmd: Sequence[str]) -> list[str]:
    args = dict(cell.model_args)
    if cell.lora:
        args["lora"] = cell.lora
    cmd = [*base_cmd, "--model", cell.model]
    if args:
        cmd += ["--model_args", ",".join(f"{k}={_fmt_value(v)}" for k, v in args.items())]
    cmd += ["--tasks", ",".join(cell.tasks), "--output_path", str(out_dir), "--log_samples"]
    if cell.limit is not None:
        cmd += ["--limit", str(cell.limit)]
    return cmd + cell.extra_args


def write_cell_file(cell: Cell, out_dir: Path, sweep_name: str) -> None:
    """``cell.json``: what the cell is and which cell it controls (read by the leaderboard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"cell": cell.name, "model": cell.model, "model_args": cell.model_args, "lora": cell.lora,
            "controls": cell.controls, "sweep": sweep_name}
    (out_dir / CELL_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


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


def parse_shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    i_, n_ = int(i), int(n)
    if not (n_ >= 1 and 0 <= i_ < n_):
        raise argparse.ArgumentTypeError(f"--shard wants i/n with 0 <= i < n, got {text!r}")
    return i_, n_


class Runner:
    """Runs cells in order; one instance per worker (GPU)."""

    def __init__(self, sweep: Sweep, base_cmd: Sequence[str], total: int, verbose: bool = False) -> None:
        self.sweep, self.base_cmd, self.total, self.verbose = sweep, list(base_cmd), total, verbose
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.stop = threading.Event()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def run_cell(self, idx: int, cell: Cell, env_extra: dict[str, str] | None = None) -> None:
        out_dir = self.sweep.output_root / cell.name
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
            proc = subprocess.Popen(
                cmd,
                stdout=None if self.verbose else log,
                stderr=subprocess.STDOUT if not self.verbose else None,
                env=env,
            )
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


def parse_overrides(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shirg-sweep", description=__doc__.splitlines()[0])
    p.add_argument("config", help="sweep YAML (configs/sweeps/*.yaml)")
    p.add_argument("--output-root", help="override the YAML's output_root")
    p.add_argument(
        "--model_args",
        "--model-args",
        dest="model_args",
        help="k=v,... applied to every cell (e.g. pretrained=/path/to/tiny)",
    )
    p.add_argument("--limit", type=int, help="override the YAML's limit")
    p.add_argument("--tasks", type=task_list, help="a,b,...: run every cell on these tasks instead of the YAML's")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shard", type=parse_shard, help="i/n: run cells i, i+n, i+2n, ... (0-based)")
    group.add_argument("--gpus", help="0,1,...: one worker per GPU (CUDA_VISIBLE_DEVICES), cells round-robin")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--lmms-eval-cmd", help="command that runs lmms-eval (default: the lmms_eval script)")
    p.add_argument("--no-leaderboard", action="store_true", help="skip the final leaderboard and plots")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="stream lmms-eval output instead of logging it"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sweep = load_sweep(args.config, parse_overrides(args.model_args))
    if args.output_root:
        sweep.output_root = Path(args.output_root)
    if args.limit is not None:
        for c in sweep.cells:
            c.limit = args.limit
    if args.tasks:
        sweep.tasks = args.tasks
        for c in sweep.cells:
            c.tasks = list(args.tasks)
    base_cmd = shlex.split(args.lmms_eval_cmd) if args.lmms_eval_cmd else default_lmms_eval_cmd()
    indexed = list(enumerate(sweep.cells))
    if args.shard:
        i, n = args.shard
        indexed = [(k, c) for k, c in indexed if k % n == i]
    total = len(sweep.cells)

    if args.dry_run:
        for k, c in indexed:
            state = " (complete, would skip)" if is_complete(c, sweep.output_root / c.name) else ""
            state += f" (controls {c.controls})" if c.controls else ""
            print(
                f"[{k + 1}/{total}] {c.name}{state}: {shlex.join(cell_command(c, sweep.output_root / c.name, base_cmd))}"
            )
        return 0

    runner = Runner(sweep, base_cmd, total, verbose=args.verbose)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    try:
        if len(gpus) > 1:
            workers = []
            for j, gpu in enumerate(gpus):
                mine = indexed[j :: len(gpus)]

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
            for k, c in indexed:
                runner.run_cell(k, c, env)
    except KeyboardInterrupt:
        runner.terminate()
        print(
            "shirg-sweep: interrupted; completed cells keep their .complete marker, rerun to resume",
            file=sys.stderr,
        )
        return 130

    status = 0
    if runner.failed:
        print(
            f"shirg-sweep: {len(runner.failed)} cell(s) failed: {', '.join(runner.failed)}", file=sys.stderr
        )
        status = 1
    if args.no_leaderboard or args.shard:
        return status
    from shirg_eval.report.leaderboard import LeaderboardError, run_leaderboard

    out = sweep.output_root / "leaderboard.md"
    for baseline in dict.fromkeys([sweep.baseline, None]):  # without deltas if the baseline cannot be used
        try:
            run_leaderboard(
                [sweep.output_root],
                baseline=baseline,
                output=out,
                plots=sweep.output_root / "plots",
                n_boot=args.n_boot,
            )
            print(
                f"shirg-sweep: leaderboard at {out}, plots in {sweep.output_root / 'plots'}", file=sys.stderr
            )
            print(out.read_text(encoding="utf-8"))
            return status
        except LeaderboardError as exc:
            print(f"shirg-sweep: leaderboard with baseline {baseline!r} not built: {exc}", file=sys.stderr)
    return status or 1


if __name__ == "__main__":
    sys.exit(main())
