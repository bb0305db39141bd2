"""The GPU run kit's steps, each in its own process under its own time limit (``gpu_kit/gpu_check.sh`` runs this).

Steps: ``preflight`` (imports, CUDA, fixtures, card and versions; stops the run at once if something core is
missing), ``fidelity_fp32`` (tests/test_fidelity.py + tests/test_kv_cache.py against the golden fixtures on the
device in float32), ``fidelity_bf16`` (tests/test_fidelity.py in bfloat16 with its documented tolerances),
``bench`` (``shirg-bench --dims real``: lavida_384, lavida_672, shirg_fixed, pool_k; prefix cache on/off; prefix KV
bf16 vs int8; 30 steps; interleaved rounds), ``throughput`` (``python -m shirg_eval.bench.throughput --dims real``:
shirg_fixed answers/s at batch 1/8/16, the batch-1 and batch-8 step eager vs ``compile=true`` -- reduce-overhead,
CUDA graphs -- and the batch-1 step over the weight-read floor, LM weight bytes / measured copy bandwidth),
``harness`` (``shirg-bench --harness-overhead`` on the tiny model).
``--dry-run`` runs the same steps on the CPU at tiny dims (random init through the same on-device path), with
fewer rounds and steps, in under a minute: CI runs it so the kit cannot rot.

Every step writes its result as it finishes; ``gpu_check.json`` and ``gpu_check.md`` (:mod:`gpu_summary`) are
rewritten after each step, so a run stopped from outside still leaves what it measured. Output files (at most 8, for the
device tool): gpu_check.json, gpu_check.md, gpu_check.log, and at the end gpu_check_raw.tar.gz holding the raw
fidelity_fp32.xml, fidelity_bf16.xml, bench.json, throughput.json and harness.json (before the end they lie beside).
Stdlib only at import, so it can report a broken environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_prep import REPO, source_hash  # noqa: E402
from gpu_summary import collect_results, markdown  # noqa: E402

BENCH_VARIANTS = "lavida_384,lavida_672,shirg_fixed,pool_k"
CORE_MODULES = ("torch", "transformers", "safetensors", "tokenizers", "PIL", "numpy", "yaml", "tabulate", "psutil",
                "pytest", "hypothesis", "shirg_eval", "shirg_eval.cli.bench")
HARNESS_MODULES = ("shirg_eval.tasks", "lmms_eval", "lmms_eval.evaluator", "datasets", "evaluate", "loguru",
                   "pytablewriter", "pycocoevalcap.cider.cider", "pandas", "pyarrow", "accelerate")
PREFLIGHT = r"""
import importlib, importlib.util, json, platform, sys, traceback
out = {"python": sys.version.split()[0], "missing": {}, "errors": {}}
groups, find_only = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
for group, mods in groups.items():
    out["missing"][group] = []
    for m in mods:
        try:
            if group in find_only:  # located, not imported (the step itself imports it)
                if importlib.util.find_spec(m) is None:
                    raise ModuleNotFoundError(f"No module named {m!r}")
            else:
                importlib.import_module(m)
        except Exception as e:
            out["missing"][group].append(m)
            out["errors"][m] = f"{type(e).__name__}: {e}"[:300]
try:
    import torch, transformers
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["transformers"] = transformers.__version__
    import PIL  # the one imported (the kit's wheel when it shadows the machine's): it decides resampling
    out["pillow"] = PIL.__version__
    out["cuda_available"] = torch.cuda.is_available()
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out["device_name"] = p.name
        out["capability"] = f"{p.major}.{p.minor}"
        out["device_memory_gb"] = round(p.total_memory / 2**30, 1)
        out["cudnn"] = torch.backends.cudnn.version()
except Exception:
    out["torch_error"] = traceback.format_exc()[-500:]
for name in ("lmms_eval", "datasets", "huggingface_hub", "pandas", "pyarrow", "filelock", "numpy", "torchvision",
             "shirg_eval"):
    try:
        from importlib.metadata import version
        out.setdefault("versions", {})[name] = version(name.replace("_", "-"))
    except Exception:
        pass
try:
    import shirg_eval
    out["shirg_eval_path"] = shirg_eval.__file__
except Exception:
    pass
out["platform"] = platform.platform()
print("PREFLIGHT " + json.dumps(out))
"""


@dataclass
class Step:
    name: str
    cap_s: int  # its own time limit; the run's remaining budget can shorten it
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    needs: str = "core"  # module group it cannot run without
    output: str | None = None  # file it writes under --out


class Run:
    def __init__(self, out: Path, budget_s: float, dry_run: bool):
        self.out, self.budget_s, self.dry_run = out, budget_s, dry_run
        self.t0 = time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "gpu_check.log", "a", buffering=1)
        self.summary: dict = {"kit": "gpu_kit/gpu_check.sh", "mode": "dry-run (CPU, tiny dims)" if dry_run else "gpu",
                              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "budget_s": budget_s, "steps": {}}

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")

    def run(self, step: Step, reserve_s: float = 15.0) -> dict:
        limit = min(step.cap_s, self.remaining() - reserve_s)
        if limit < min(10, step.cap_s):  # not even 10 s left for it
            return self.record(step, {"status": f"skipped: {self.remaining():.0f} s of the budget left"})
        self.say(f"\n=== {step.name} (limit {limit:.0f} s): {' '.join(step.cmd)}")
        started = time.monotonic()
        proc = subprocess.Popen(step.cmd, cwd=REPO, env={**os.environ, **step.env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=self._pump, args=(proc, lines), daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=limit)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            status = f"timed out after {limit:.0f} s (partial results kept)"
        reader.join(timeout=5)
        result = {"status": status, "seconds": round(time.monotonic() - started, 1), "limit_s": round(limit),
                  "cmd": step.cmd, "tail": lines[-15:]}
        return self.record(step, result)

    def _pump(self, proc: subprocess.Popen, lines: list[str]) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            self.say(line)

    def record(self, step: Step, result: dict) -> dict:
        if step.output:
            result["output"] = step.output
        self.summary["steps"][step.name] = result
        self.say(f"--- {step.name}: {result['status']}")
        self.write()
        return result

    def write(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.summary["results"] = collect_results(self.out)
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str) + "\n")
        tmp.replace(self.out / "gpu_check.json")
        (self.out / "gpu_check.md").write_text(markdown(self.summary))


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------------- environment
def nvidia_smi() -> dict:
    fields = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,pstate"
    try:
        q = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20)
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"nvidia-smi: {err}"}
    values = [v.strip() for v in q.stdout.strip().splitlines()[0].split(",")] if q.stdout.strip() else []
    out = dict(zip(fields.split(","), values, strict=False))
    cuda = next((line.split("CUDA Version:")[1].split("|")[0].strip() for line in head.splitlines()
                 if "CUDA Version:" in line), None)
    return {**out, "driver_cuda_version": cuda}


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def preflight(run: Run, python: str, fixtures: Path, skip_harness: bool) -> bool:
    """Import check in a child process (60 s), card and versions, fixtures; False when the run cannot go on."""
    groups = {"core": list(CORE_MODULES), "harness": [] if skip_harness else list(HARNESS_MODULES)}
    # on the GPU the whole lmms_eval import chain is tried up front (a failure there costs device minutes);
    # the dry run only locates it, and its harness step imports it anyway
    find_only = ["harness"] if run.dry_run else []
    step = Step("preflight", 60, [python, "-c", PREFLIGHT, json.dumps(groups), json.dumps(find_only)])
    result = run.run(step, reserve_s=0)
    info = next((json.loads(line[len("PREFLIGHT "):]) for line in result.get("tail", [])
                 if line.startswith("PREFLIGHT ")), None)
    env = {"python_exe": python, "source_sha256": source_hash(), "git_commit": git_commit(),
           "fixtures": str(fixtures)}
    if not run.dry_run:
        env["nvidia_smi_before"] = nvidia_smi()
    manifest = REPO / ".gpu" / "manifest.json"
    if manifest.is_file():
        env["gpu_manifest"] = json.loads(manifest.read_text())
    run.summary["env"] = {**env, **(info or {})}
    problems = []
    if info is None:
        problems.append("the import check printed nothing (see gpu_check.log)")
    else:
        result.pop("tail", None)
        if info["missing"]["core"]:
            problems.append("missing: " + "; ".join(f"{m} ({info['errors'][m]})" for m in info["missing"]["core"]))
        if not run.dry_run and not info.get("cuda_available"):
            problems.append(f"torch {info.get('torch')} sees no CUDA device")
    if not any(fixtures.glob("set_*/expected.safetensors")):
        problems.append(f"no golden fixtures under {fixtures} (make gpu-prep copies them to .gpu/fixtures)")
    missing_harness = (info or {}).get("missing", {}).get("harness", [])
    run.summary["harness_missing"] = missing_harness
    if missing_harness:
        run.say("preflight: the harness step will be skipped, missing "
                + "; ".join(f"{m} ({info['errors'][m]})" for m in missing_harness)
                + " -- run `make gpu-prep` and carry .gpu")
    if problems:
        run.summary["steps"]["preflight"]["status"] = "failed: " + " | ".join(problems)
        run.say("preflight FAILED: " + " | ".join(problems) + "\nfix: run `make gpu-prep` here and carry .gpu; "
                "see docs/BENCHMARKS.md")
        run.write()
        return False
    run.write()
    return True


def steps(python: str, out: Path, fixtures: Path, dry_run: bool) -> list[Step]:
    device = "cpu" if dry_run else "cuda"
    fid_env = {"SHIRG_TEST_DEVICE": device, "SHIRG_FIXTURES": str(fixtures), "PYTHONUNBUFFERED": "1"}
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=legacy"]
    bench = [python, "-m", "shirg_eval.cli.bench", "--variants", BENCH_VARIANTS, "--baseline", "lavida_384",
             "--cache-off-variants", BENCH_VARIANTS, "--kv-dtype", "bf16", "--kv-compare", "int8", "--warmup", "1",
             "--json", str(out / "bench.json")]
    if dry_run:  # same cells and code path (random init built on the device), tiny dims, fewer rounds and steps
        bench += ["--dims", "tiny", "--random-init", "--runs", "2", "--steps", "4", "--gen-length", "4"]
    else:
        bench += ["--dims", "real", "--runs", "3", "--steps", "30", "--gen-length", "32"]
    # batch 1/8/16 throughput and the batch-1 step eager vs compiled (reduce-overhead: CUDA graphs) vs the
    # weight-read floor; compiling at real dims takes minutes per shape, so only batch 1 and 8 are compiled there
    throughput = [python, "-m", "shirg_eval.bench.throughput", "--variant", "shirg_fixed", "--compile",
                  "--json", str(out / "throughput.json")]
    if dry_run:
        throughput += ["--dims", "tiny", "--batch-sizes", "1,2", "--docs", "1", "--rounds", "1", "--gen-length", "4",
                       "--copy-mb", "16"]
    else:
        throughput += ["--dims", "real", "--batch-sizes", "1,8,16", "--compile-batch-sizes", "1,8", "--docs", "8",
                       "--rounds", "2", "--gen-length", "32", "--copy-mb", "2048"]
    harness = [python, "-m", "shirg_eval.cli.bench", "--harness-overhead", "--variants", "shirg_fixed",
               "--harness-docs", "3" if dry_run else "8", "--json", str(out / "harness.json")]
    unbuffered = {"PYTHONUNBUFFERED": "1"}
    # the caps are sized for the GPU; a dry run on a shared 2-core CPU (CI, or beside a training job) can take
    # three times as long per step (fidelity_fp32 took over 90 s beside a training run), while --budget bounds the whole
    scale = 3 if dry_run else 1
    return [
        Step("fidelity_fp32", 90 * scale, [*pytest, "--junitxml", str(out / "fidelity_fp32.xml"), "tests/test_fidelity.py",
                                   "tests/test_kv_cache.py"], {**fid_env, "SHIRG_TEST_DTYPE": "float32"},
             output="fidelity_fp32.xml"),
        Step("fidelity_bf16", 60 * scale, [*pytest, "--junitxml", str(out / "fidelity_bf16.xml"), "tests/test_fidelity.py"],
             {**fid_env, "SHIRG_TEST_DTYPE": "bfloat16"}, output="fidelity_bf16.xml"),
        Step("bench", 150 * scale, bench, unbuffered, output="bench.json"),
        Step("throughput", 150 * scale, throughput, unbuffered, output="throughput.json"),
        Step("harness", 60 * scale, harness, {**unbuffered, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
             needs="harness", output="harness.json"),
    ]


RAW_ARCHIVE = "gpu_check_raw.tar.gz"


def pack_raw(out: Path) -> None:
    """Every step's raw file (junit XML, bench/harness/throughput JSON) into one archive beside the summaries, which
    keep their parsed results: gpu_check.json, gpu_check.md, gpu_check.log and the archive come back."""
    import tarfile

    keep = {"gpu_check.json", "gpu_check.md", "gpu_check.log", RAW_ARCHIVE}
    raw = sorted(p for p in out.iterdir() if p.is_file() and p.name not in keep and not p.name.endswith(".tmp"))
    with tarfile.open(out / RAW_ARCHIVE, "w:gz") as tar:
        for path in raw:
            tar.add(path, arcname=path.name)
    for path in raw:
        path.unlink()


# ---------------------------------------------------------------------------------------------- main
def default_fixtures() -> Path:
    carried = REPO / ".gpu" / "fixtures" / "lavida"
    if carried.is_dir():
        return carried
    return Path(os.environ.get("SHIRG_FIXTURES", REPO.parent / "shared" / "fixtures" / "lavida"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny dims, short: what CI runs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default $OUT, else runs/gpu_check)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for all steps together (default 470 on a GPU: with the wheels' install one device call "
                        "of under 9 min; 300 "
                        "for --dry-run, which needs about 90 on an idle 2-core CPU)")
    p.add_argument("--skip-harness", action="store_true", help="leave out the lmms_eval overhead step")
    p.add_argument("--fixtures", type=Path, default=None, help="golden fixtures (default .gpu/fixtures/lavida)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    p.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    args = p.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or REPO / "runs" / "gpu_check")
    budget = args.budget or (300.0 if args.dry_run else 470.0)
    fixtures = (args.fixtures or default_fixtures()).resolve()
    run = Run(out.resolve(), budget, args.dry_run)
    run.say(f"gpu_check: {run.summary['mode']}, budget {budget:.0f} s, output {run.out}")
    if not preflight(run, args.python, fixtures, args.skip_harness):
        return 2
    wanted = set(args.only.split(",")) if args.only else None
    for step in steps(args.python, run.out, fixtures, args.dry_run):
        if wanted is not None and step.name not in wanted:
            continue
        if step.needs == "harness" and (args.skip_harness or run.summary["harness_missing"]):
            why = "--skip-harness" if args.skip_harness else "missing " + ", ".join(run.summary["harness_missing"])
            run.record(step, {"status": f"skipped: {why}"})
            continue
        run.run(step)
    if not args.dry_run:
        run.summary["env"]["nvidia_smi_after"] = nvidia_smi()
    run.write()
    pack_raw(run.out)
    run.say("\n" + markdown(run.summary, compact=True))
    failed = [n for n, r in run.summary["steps"].items() if r["status"] != "ok"]
    run.say(f"gpu_check: {'all steps ok' if not failed else 'not ok: ' + ', '.join(failed)}; "
            f"{run.summary['elapsed_s']:.0f} s; results in {run.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
