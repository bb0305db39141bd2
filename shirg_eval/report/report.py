"""One self-contained report: the leaderboard, its plots and every run's metadata.

The metadata section carries each run's ``run_meta`` (variant, selector params, checkpoint + LoRA sha256, seed,
dtype, device, package versions, resolution), the lmms-eval config (model, model_args, limit, seeds) and the
task versions, so a run can be reproduced from the report alone.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shirg_eval.report.results import TaskRun
    from shirg_eval.report.table import Leaderboard


def run_metadata(run: TaskRun) -> dict[str, Any]:
    res = run.results
    return {
        "variant": run.variant,
        "lora": run.lora,
        "settings": run.key.settings,
        "task": run.task,
        "results_file": str(run.results_path),
        "samples_file": str(run.samples_path) if run.samples_path else None,
        "run_meta": run.run_meta,
        "config": res.get("config"),
        "n-samples": (res.get("n-samples") or {}).get(run.task),
        "task_version": (res.get("versions") or {}).get(run.task),
        "task_hash": (res.get("task_hashes") or {}).get(run.task),
        "lmms_eval_version": res.get("lmms_eval_version"),
        "git_hash": res.get("git_hash"),
        "date": res.get("date"),
    }


def _metadata_json(run: TaskRun) -> str:
    return json.dumps(run_metadata(run), indent=2, default=str, ensure_ascii=False)


def write_report(lb: Leaderboard, out: Path, plot_files: list[Path], fmt: str = "md") -> Path:
    """Write ``report.md`` (PNGs referenced beside it) or ``report.html`` (PNGs embedded) into ``out``."""
    from shirg_eval.report.render import render

    out.mkdir(parents=True, exist_ok=True)
    pngs = [p for p in plot_files if p.suffix == ".png"]
    runs = sorted(lb.runs, key=lambda r: (r.name, r.task))
    base = f"Baseline: `{lb.baseline}`." if lb.baseline else "No baseline given: no deltas."
    if fmt == "md":
        parts = ["# SHIRG leaderboard", "", base, "", render(lb, "markdown")]
        parts += [f"- {n}" for n in lb.notes]
        parts += ["", "## Plots", ""]
        for p in pngs:
            if p.parent.resolve() != out.resolve():  # keep the report folder self-contained
                shutil.copyfile(p, out / p.name)
            parts += [f"### {p.stem}", "", f"![{p.stem}]({p.name})", ""]
        parts += ["## Runs", ""]
        for run in runs:
            parts += [f"### {run.name} — {run.task}", "", "```json", _metadata_json(run), "```", ""]
        path = out / "report.md"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path
    if fmt == "html":
        body = ["<h1>SHIRG leaderboard</h1>", f"<p>{html.escape(base)}</p>", render(lb, "html")]
        body += [f"<p>{html.escape(n)}</p>" for n in lb.notes]
        body.append("<h2>Plots</h2>")
        for p in pngs:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            body.append(
                f'<h3>{html.escape(p.stem)}</h3><img alt="{html.escape(p.stem)}" '
                f'src="data:image/png;base64,{data}"/>'
            )
        body.append("<h2>Runs</h2>")
        for run in runs:
            body.append(
                f"<h3>{html.escape(run.name)} — {html.escape(run.task)}</h3>"
                f"<pre>{html.escape(_metadata_json(run))}</pre>"
            )
        style = (
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
        )
        doc = (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>SHIRG leaderboard</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )
        path = out / "report.html"
        path.write_text(doc, encoding="utf-8")
        return path
    raise ValueError(f"unknown report format {fmt!r}")
