"""The GPU run kit's summary: the steps' outputs under ``--out`` read back (JUnit XML of the fidelity steps, the
bench and harness JSON) and rendered as ``gpu_check.md``. Stdlib only at import, like ``gpu_check.py``; the bench
tables come from :mod:`shirg_eval.bench.tables` when it imports, else the raw figures are printed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path


def junit(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    cases = []
    for tc in root.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = tc.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                cases.append({"test": tc.get("name"), "outcome": outcome,
                              "message": (node.get("message") or "")[:300],
                              "properties": {p.get("name"): p.get("value") for p in tc.iter("property")}})
                break
        else:
            cases.append({"test": tc.get("name"), "outcome": outcome,
                          "properties": {p.get("name"): p.get("value") for p in tc.iter("property")}})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "cases": cases}


def collect_results(out: Path) -> dict:
    res: dict = {}
    for name in ("fidelity_fp32", "fidelity_bf16"):
        res[name] = junit(out / f"{name}.xml")
    for name in ("bench", "harness", "throughput"):
        path = out / f"{name}.json"
        try:
            res[name] = json.loads(path.read_text()) if path.is_file() else None
        except json.JSONDecodeError:
            res[name] = {"status": "unreadable (written while stopped?)"}
    return res


def _worst(cases: list[dict]) -> str:
    """The largest value of every measured-error property over the tests (ids agreement listed per test)."""
    worst: dict[str, float] = {}
    ids = []
    for case in cases:
        for k, v in case["properties"].items():
            if k.startswith("ids_"):
                ids.append(v)
                continue
            try:
                worst[k] = max(worst.get(k, 0.0), float(v))
            except ValueError:
                continue
    parts = [f"{k} {v:.2e}" for k, v in sorted(worst.items())]
    return "; ".join(parts + ([f"ids agreeing {', '.join(ids)}"] if ids else []))


def throughput_lines(tp: dict | None) -> list[str]:
    """Answers/s per (batch, eager|compiled) cell, within-round ratios, the step against the weight-read floor."""
    if not tp or "throughput" not in tp:
        return []
    t, floor = tp["throughput"], tp.get("floor") or {}
    lines = ["", f"## throughput ({tp['model']}, {tp['device']}, variant {tp['variant']}, {t['documents']} documents, "
             f"{t['rounds']} interleaved rounds, gen {t['gen_length']})", "",
             "| cell | answers/s | step ms | step / floor | answers differing from b1 eager |", "|---|---|---|---|---|"]
    for key, c in t["cells"].items():
        a, s = c["answers_per_s"], c["step_ms"]
        over = f"{c['step_over_floor']:.2f}" if "step_over_floor" in c else "-"
        lines.append(f"| {key} | {a['median']:.2f} [{a['min']:.2f}, {a['max']:.2f}] | {s['median']:.2f} | {over} | "
                     f"{len(c['answers_differing_from_b1_eager'])} |")
    lines += ["", "| ratio | median [min, max] |", "|---|---|"]
    lines += [f"| {k} | {r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]{' NOISY' if r['noisy'] else ''} |"
              for k, r in t["ratios"].items()]
    if floor:
        lines += ["", f"weight-read floor {floor['floor_ms']:.3f} ms: {floor['lm_weight_bytes'] / 1e9:.2f} GB of LM "
                  f"weights at {floor['copy_bandwidth_gb_s']:.0f} GB/s measured copy bandwidth"]
    if t.get("compile_stats"):
        cs = t["compile_stats"]
        lines.append(f"compiled ({cs['mode']}): {cs['frames_compiled']} frames, {cs['graph_breaks']} graph breaks, "
                     f"{cs['recompiles']} recompiles, shapes {cs['shapes']}, {cs['compile_s']:.0f} s compiling")
    return lines


def markdown(summary: dict, compact: bool = False) -> str:
    """The summary; ``compact`` (printed last, where the device tool's output tail is read) lists the fidelity
    tests' worst errors instead of every test."""
    env, res = summary.get("env", {}), summary.get("results", {})
    smi = env.get("nvidia_smi_before") or {}
    lines = [f"# GPU check: {summary['mode']}", "",
             f"- started {summary['started']}, {summary.get('elapsed_s', 0):.0f} s of a {summary['budget_s']:.0f} s "
             "budget",
             f"- card: {env.get('device_name', smi.get('name', 'none'))}; driver {smi.get('driver_version', '-')} "
             f"(CUDA {smi.get('driver_cuda_version', '-')}); torch {env.get('torch', '-')} (CUDA "
             f"{env.get('torch_cuda', '-')}, cuDNN {env.get('cudnn', '-')}); transformers {env.get('transformers', '-')};"
             f" Pillow {env.get('pillow', '-')}; python {env.get('python', '-')}",
             f"- source sha256 {str(env.get('source_sha256', '-'))[:16]}, git {str(env.get('git_commit') or '-')[:12]}",
             "", "| step | status | seconds |", "|---|---|---|"]
    for name, r in summary["steps"].items():
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '-')} |")
    for name in ("fidelity_fp32", "fidelity_bf16"):
        j = res.get(name)
        if not j:
            continue
        c = j["counts"]
        lines += ["", f"## {name}: {c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped",
                  "", f"worst measured: {_worst(j['cases'])}"]
        failed = [case for case in j["cases"] if case["outcome"] in ("failed", "error")]
        if compact:
            lines += [f"- FAILED {case['test']}: {case.get('message', '')}" for case in failed]
            continue
        lines += ["", "| test | outcome | measured |", "|---|---|---|"]
        for case in j["cases"]:
            props = ", ".join(f"{k} {v}" for k, v in case["properties"].items())
            note = case.get("message", "")
            lines.append(f"| {case['test']} | {case['outcome']} | {props}{' -- ' + note if note else ''} |")
    bench = res.get("bench")
    if bench and bench.get("variants"):
        lines += ["", f"## shirg-bench ({bench.get('dims')} dims, {bench.get('status')})", ""]
        try:
            from shirg_eval.bench.tables import predicted_stage_table, ratio_table, stage_table, target_table

            lines += [f"{bench['model']}; {bench['device_name']} {bench['dtype']}; {bench['rounds_done']} interleaved "
                      f"rounds; timer {bench['config']['timer']}; figures median [min, max] over rounds", "",
                      stage_table(bench, "github"), "", "measured / predicted ms (cost model, profile "
                      f"{bench['cost_model']['hardware']['name']})", "", predicted_stage_table(bench, "github"), "",
                      ratio_table(bench, "github"), "", target_table(bench, "github")]
        except Exception as err:  # the summary must never fail: fall back to the raw figures
            lines += [f"(tables unavailable: {type(err).__name__}: {err})", "```",
                      json.dumps(bench.get("ratios"), indent=1, default=str)[:4000], "```"]
    lines += throughput_lines(res.get("throughput"))
    harness = res.get("harness")
    if harness and "overhead" in harness:
        lines += ["", "## harness overhead", "",
                  f"lmms_eval {harness['harness_ms_per_sample']:.1f} ms/sample vs direct "
                  f"{harness['direct_ms_per_sample']:.1f} ms/sample: {harness['overhead'] * 100:+.1f}% "
                  f"({harness.get('overhead_ms_per_sample', 0):+.2f} ms per sample; {harness['docs']} docs, "
                  f"{harness.get('device')} {harness.get('dtype')}, variant {harness['variant']}, tiny model)"]
    elif summary.get("harness_missing"):
        lines += ["", "## harness overhead", "", "not measured: missing " + ", ".join(summary["harness_missing"])]
    return "\n".join(lines) + "\n"
