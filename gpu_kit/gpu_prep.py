"""Prepare ``.gpu/`` for ``gpu_kit/gpu_check.sh`` on a lent GPU machine that has no network (``make gpu-prep``).

The GPU machine runs its own Python 3.12 with torch, transformers, pandas, pytest ... but without lmms-eval and
its import chain, and without ``../shared``. This writes, inside the repository (``/.gpu/`` is git-ignored):

* ``.gpu/wheels/``: the missing packages as wheels for CPython 3.12 / manylinux x86-64, each pinned, no
  dependencies resolved (the machine's own torch, transformers, numpy, pandas, pyarrow ... are used), plus a wheel
  of this project built from the working tree (it carries the ``lmms_eval.models`` entry point and maps
  ``tasks/`` to ``shirg_eval.tasks``). pycocoevalcap's wheel is 104 MB of Java jars and METEOR data that CIDEr never
  touches: it is repacked as ``pycocoevalcap 1.2`` without them (python files and metadata only).
* ``.gpu/fixtures/lavida/``: a copy of the golden fixtures (27 MB).
* ``.gpu/manifest.json``: what is there, its size, and a hash of the sources the project wheel was built from, so
  that ``gpu_check.sh`` refuses a stale wheel instead of measuring old code.

The working tree that travels (tracked and untracked-not-ignored files plus ``.gpu``) must stay under 64 MiB;
this script checks that and prints the device command. Stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_DIR = REPO / ".gpu"
LIMIT_BYTES = 64 * 2**20
# Missing from the GPU image and imported on the harness path (lmms_eval CLI -> evaluator -> metrics/tasks,
# datasets for the parquet task data, pytablewriter for the results table). Pins: what the project's CPU venv
# runs; all pure Python (multiprocess is the CPython-3.12 build). Optional imports that are guarded upstream
# (zstandard, numexpr, nltk) are left out.
PILLOW_PIN = "pillow==13.0.0"
WHEELS = (
    "lmms-eval==0.7.3", "datasets==5.2.0", "evaluate==0.4.6", "dill==0.4.1", "multiprocess==0.70.19",
    "loguru==0.7.3", "tenacity==9.2.1", "python-dotenv==1.2.4", "pytablewriter==1.2.1", "dataproperty==1.1.1",
    "mbstrdecoder==1.1.5", "pathvalidate==3.3.1", "tabledata==1.3.5", "tcolorpy==0.1.7", "typepy==1.3.5",
    "chardet==6.0.0.post1", "pytz==2026.6", "filelock==4.2.12", "pycocoevalcap==1.2",
    # Not missing, but older there (the 2026-11-27 H200 run): Pillow < 13 resamples horizontally first where 13
    # may go vertically first (a view that grows one axis and shrinks the other), up to 21 grey levels apart.
    # The goldens were made with 13.0.0 (meta.json "versions"), so the kit ships it (docs/BENCHMARKS.md).
    PILLOW_PIN,
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
SOURCE_GLOBS = ("shirg_eval/**/*.py", "tasks/**/*.py", "tasks/**/*.yaml", "tasks/**/*.json", "configs/**/*.yaml",
                "configs/**/*.json", "pyproject.toml")


def source_hash(repo: Path = REPO) -> str:
    """sha256 over the files the project wheel is built from (paths and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted({p for g in SOURCE_GLOBS for p in repo.glob(g) if p.is_file() and "__pycache__" not in p.parts})
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def traveling_bytes(repo: Path = REPO) -> int:
    """Bytes of the tracked and untracked-not-ignored files (what the device tool sends besides carried paths)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout
    return sum((repo / f).stat().st_size for f in out.decode().split("\0") if f and (repo / f).is_file())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def download_wheels(dest: Path, pins: tuple[str, ...] = WHEELS) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", "-d", str(dest)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + list(pins), check=True)


def trim_pycocoevalcap(wheel: Path) -> None:
    """Rewrite pycocoevalcap's wheel without its jars and data (CIDEr is pure Python); RECORD lists what stays."""
    keep_suffixes = (".py", "METADATA", "WHEEL", "top_level.txt", "LICENSE", "RECORD")
    with zipfile.ZipFile(wheel) as src:
        names = [n for n in src.namelist() if n.endswith(keep_suffixes)]
        contents = {n: src.read(n) for n in names}
    record = next(n for n in names if n.endswith(".dist-info/RECORD"))
    kept = [line for line in contents[record].decode().splitlines() if line.split(",")[0] in contents]
    contents[record] = ("\n".join(kept) + "\n").encode()
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for name in names:
            out.writestr(name, contents[name])
    tmp.replace(wheel)


def build_project_wheel(dest: Path) -> Path:
    for old in dest.glob("shirg_eval-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:  # build outside the tree: no build/ or egg-info left behind
        src = Path(tmp) / "src"
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", ".gpu", "runs", "outputs",
                                                                  "__pycache__", "*.egg-info", "build", "dist"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(dest), str(src)], check=True)
    return next(dest.glob("shirg_eval-*.whl"))


def device_command() -> str:
    """What the lead passes to the device tool's ``run`` (with carry [".gpu"] and timeout_s 480)."""
    return 'bash gpu_kit/gpu_check.sh --out "$OUT"'



def prepare(fixtures: Path, skip_download: bool = False) -> dict:
    wheels = GPU_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not skip_download:
        download_wheels(wheels)
        trim_pycocoevalcap(next(wheels.glob("pycocoevalcap-*.whl")))
    project = build_project_wheel(wheels)
    target = GPU_DIR / "fixtures" / "lavida"
    if not (fixtures / "set_A").is_dir():
        raise SystemExit(f"golden fixtures not found at {fixtures}; pass --fixtures DIR (../shared/fixtures/lavida)")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(fixtures, target)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    stems = [n.split("-")[0].lower().replace("_", "-") for n in names]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise SystemExit(f".gpu/wheels holds two versions of {dupes}: pip would refuse them; delete .gpu and rerun")
    carried = folder_bytes(GPU_DIR)
    tree = traveling_bytes()
    manifest = {
        "source_sha256": source_hash(), "project_wheel": project.name, "wheels": names,
        "wheel_bytes": folder_bytes(wheels), "fixture_bytes": folder_bytes(target), "carried_bytes": carried,
        "tree_bytes": tree, "total_bytes": carried + tree, "limit_bytes": LIMIT_BYTES,
        "pycocoevalcap": "repacked without jars/data (CIDEr only)",
    }
    (GPU_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if carried + tree > LIMIT_BYTES:
        raise SystemExit(f"tree {tree / 2**20:.1f} MiB + .gpu {carried / 2**20:.1f} MiB exceeds the 64 MiB the device "
                         "tool carries")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", type=Path, default=Path(os.environ.get(
        "SHIRG_FIXTURES", REPO.parent / "shared" / "fixtures" / "lavida")))
    p.add_argument("--skip-download", action="store_true", help="reuse the downloaded wheels; rebuild the project's")
    args = p.parse_args(argv)
    m = prepare(args.fixtures, args.skip_download)
    print(f"prepared .gpu: {len(m['wheels'])} wheels ({m['wheel_bytes'] / 2**20:.1f} MiB), fixtures "
          f"{m['fixture_bytes'] / 2**20:.1f} MiB; with the tree {m['total_bytes'] / 2**20:.1f} MiB of 64 MiB")
    print(f"device command (carry [\".gpu\"], timeout_s 480): {device_command()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
