"""A sweep YAML: its cells, checked whole before anything runs, and the ``lmms_eval`` command each cell runs.

Sweep YAML::

    name: roadmap                      # optional
    tasks: [chartqa_200, docvqa_200]   # or "chartqa_200,docvqa_200"; `--tasks a,b` overrides it for every cell
    limit: null                        # or a number (passed as --limit: documents, or a fraction below 1)
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
(``controls: "shirg_fixed_k{k}"``). A cell may also set ``tasks``, ``limit`` and ``extra_args`` (further
lmms-eval flags from an allow list). What names and values may hold: ``sweep_safety``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shirg_eval.report import sweep_safety as safety

CELL_KEYS = {"name", "model", "model_args", "lora", "tasks", "limit", "extra_args", "controls"}


@dataclass
class Cell:
    name: str
    model: str
    model_args: dict[str, Any]
    tasks: list[str]
    limit: int | float | None = None
    lora: str | None = None
    extra_args: list[str] = field(default_factory=list)
    controls: str | None = None  # name of the cell this one is a same-budget control of


@dataclass
class Sweep:
    tasks: list[str]
    output_root: Path
    cells: list[Cell]
    limit: int | float | None = None
    baseline: str | None = None
    name: str = "sweep"


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def model_args_string(cell: Cell) -> str:
    """The ``--model_args`` value of a cell (its model_args, then ``lora``)."""
    args = dict(cell.model_args)
    if cell.lora:
        args["lora"] = cell.lora
    return ",".join(f"{k}={fmt_value(v)}" for k, v in args.items())


def cell_command(cell: Cell, out_dir: Path, base_cmd: Sequence[str]) -> list[str]:
    cmd = [*base_cmd, "--model", cell.model]
    args = model_args_string(cell)
    if args:
        cmd += ["--model_args", args]
    cmd += ["--tasks", ",".join(cell.tasks), "--output_path", str(out_dir), "--log_samples"]
    if cell.limit is not None:
        cmd += ["--limit", str(cell.limit)]
    return cmd + cell.extra_args


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise safety.SweepInputError(f"{what} must be a mapping (key: value), got {type(value).__name__} {value!r}")
    return dict(value)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise safety.SweepInputError(f"{what} must be a list (e.g. [a, b]), got {type(value).__name__} {value!r}")
    return value


def task_list(value: Any, what: str = "tasks") -> list[str]:
    """A sweep's tasks from a YAML list or a comma-separated string, each a checked task name."""
    if isinstance(value, str):
        value = value.split(",")
    items = [str(t).strip() if isinstance(t, str) else t for t in _list(value, f"{what} (or a comma-separated string)")]
    tasks = [t for t in items if t != ""]
    for task in tasks:
        safety.check_name("task", task, what)
    return tasks


def _expand_grid(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """``{model, name?, model_args?, k: [..], ...}``: list-valued extra keys are crossed into model_args."""
    axes = {k: v for k, v in entry.items() if k not in CELL_KEYS}
    names, values = list(axes), [v if isinstance(v, list) else [v] for v in axes.values()]
    out = []
    for combo in itertools.product(*values):
        params = dict(zip(names, combo, strict=True))
        cell = {k: v for k, v in entry.items() if k in CELL_KEYS}
        cell["model_args"] = {**_mapping(entry.get("model_args"), f"{where}: model_args"), **params}
        template = entry.get("name") or (
            str(entry.get("model")) + "".join(f"_{k}{fmt_value(v)}" for k, v in params.items())
        )
        fields = {k: fmt_value(v) for k, v in params.items()}
        try:
            cell["name"] = str(template).format(**fields)
            if entry.get("controls") is not None:  # e.g. "shirg_fixed_k{k}": each cell's same-budget reference
                cell["controls"] = str(entry["controls"]).format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise safety.SweepInputError(f"{where}: name template {template!r} (or controls) names a field the grid "
                                         f"does not have ({type(err).__name__}: {err}); fields: {sorted(fields)}") from None
        out.append(cell)
    return out


def load_sweep(path: str | Path, overrides: dict[str, str] | None = None) -> Sweep:
    """Parse and check a sweep YAML; ``overrides`` (from ``--model_args``) win over every cell's model_args.

    Every refusal is a :class:`ValueError` raised before anything runs or any folder is touched."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping at the top level (tasks, output_root, cells, ...)")
    tasks = task_list(spec.get("tasks"), f"{path}: tasks")
    if not tasks:
        raise ValueError(f"{path}: 'tasks' is empty")
    safety.check_limit(spec.get("limit"), str(path))
    output_root = spec.get("output_root")
    if output_root is not None and not isinstance(output_root, str):
        raise safety.SweepInputError(f"{path}: output_root must be a path (a string), got {output_root!r}")
    defaults = _mapping(_mapping(spec.get("defaults"), f"{path}: defaults").get("model_args"),
                        f"{path}: defaults.model_args")
    safety.check_model_args(defaults, f"{path}: defaults")
    safety.check_model_args(overrides or {}, "--model_args")
    raw_cells = [_mapping(c, f"{path}: a cell") for c in _list(spec.get("cells"), f"{path}: cells")]
    for entry in _list(spec.get("grid"), f"{path}: grid"):
        raw_cells += _expand_grid(_mapping(entry, f"{path}: a grid entry"), f"{path}: grid entry")
    cells = [_cell(c, str(path), tasks, spec.get("limit"), defaults, overrides or {}) for c in raw_cells]
    seen: dict[str, str] = {}
    for cell in cells:
        # Case-folded: on a case-insensitive filesystem `a` and `A` would share a folder.
        prior = seen.get(cell.name.casefold())
        if prior is not None:
            same = "" if prior == cell.name else f" (the folder of {prior!r} on a case-insensitive filesystem)"
            raise safety.SweepInputError(f"{path}: duplicate cell name {cell.name!r}{same}")
        seen[cell.name.casefold()] = cell.name
    for cell in cells:
        if cell.controls is not None and (cell.controls == cell.name or cell.controls not in seen.values()):
            raise safety.SweepInputError(
                f"{path}: cell {cell.name!r} controls {cell.controls!r}, which is not another cell of this sweep; "
                f"cells: {', '.join(c.name for c in cells)}"
            )
    return Sweep(
        tasks=tasks,
        output_root=Path(output_root or f"runs/{Path(path).stem}"),
        cells=cells,
        limit=spec.get("limit"),
        baseline=spec.get("baseline"),
        name=str(spec.get("name") or Path(path).stem),
    )


def _cell(c: dict[str, Any], path: str, tasks: list[str], limit: Any, defaults: dict[str, Any],
          overrides: dict[str, str]) -> Cell:
    unknown = set(c) - CELL_KEYS
    if unknown:
        raise safety.SweepInputError(f"{path}: cell {c.get('name')!r} has unknown keys {sorted(unknown)}")
    if c.get("model") is None:
        raise safety.SweepInputError(f"{path}: cell {c.get('name')!r} has no model")
    name = c.get("name")
    if name is not None and not isinstance(name, str):
        raise safety.SweepInputError(f"{path}: cell name {name!r} is a {type(name).__name__}, not text: quote it in "
                                     f"the YAML (name: \"{name}\") so it is used as written")
    name = safety.check_cell_name(name or str(c["model"]), path)
    where = f"{path}: cell {name!r}"
    model = safety.check_name("model", c["model"], where)
    own_args = _mapping(c.get("model_args"), f"{where}: model_args")
    safety.check_model_args(own_args, where)
    if c.get("lora") is not None:
        safety.check_value("lora", c["lora"], where)
    cell_tasks = task_list(c.get("tasks"), f"{where}: tasks")
    safety.check_limit(c.get("limit"), where)
    extra = _list(c.get("extra_args"), f"{where}: extra_args")
    safety.check_extra_args(extra, where)
    args = {**defaults, **own_args, **overrides}
    cell = Cell(
        name=name,
        model=model,
        model_args={k: v for k, v in args.items() if v is not None},
        tasks=list(cell_tasks or tasks),
        limit=c.get("limit", limit),
        lora=None if c.get("lora") is None else str(c["lora"]),
        extra_args=[str(a) for a in extra],
        controls=None if c.get("controls") is None else str(c["controls"]),
    )
    safety.check_results_folder(model_args_string(cell), where)
    return cell


def parse_overrides(text: str | None) -> dict[str, str]:
    """``k=v,k=v`` from ``shirg-sweep --model_args`` (checked like a cell's model_args in :func:`load_sweep`)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise safety.SweepInputError(f"--model_args: {part.strip()!r} is not key=value (values cannot hold "
                                         "commas: lmms-eval splits --model_args on them)")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out
