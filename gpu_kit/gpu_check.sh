#!/usr/bin/env bash
# GPU run kit: fidelity on CUDA (fp32 + bf16), shirg-bench --dims real, harness overhead; one JSON + one markdown
# summary under $OUT (or --out DIR). Run from anywhere; everything it needs travels in the repository:
#
#   make gpu-prep                                   # here, with PyPI: .gpu/ = wheels + golden fixtures (~35 MiB)
#   bash gpu_kit/gpu_check.sh --out "$OUT"            # on the GPU machine (carry .gpu): one call of under 9 min
#   bash gpu_kit/gpu_check.sh --dry-run --out DIR     # on a CPU: the same steps at tiny dims in under a minute (CI)
#
# Options after the first are passed to gpu_kit/gpu_check.py (--budget S, --skip-harness, --only STEPS, --fixtures DIR).
# The wheels in .gpu/wheels are installed with `pip install --no-index --no-deps --target` into a temporary folder
# put first on PYTHONPATH; nothing else is installed and nothing is fetched.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry=1; done
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi

if [ "$dry" = 0 ]; then
    if ! ls .gpu/wheels/*.whl >/dev/null 2>&1; then
        echo "gpu_check: .gpu/wheels is missing: run 'make gpu-prep' on a machine with PyPI and carry .gpu" \
             "(the lmms_eval harness step and the project wheel come from there)" >&2
        exit 2
    fi
    # the project wheel must be built from this very tree, or the run would measure old code
    if ! "$py" - <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "gpu_kit")
from gpu_prep import source_hash
if not Path(".gpu/manifest.json").is_file():
    sys.exit("gpu_check: .gpu/manifest.json is missing: rerun 'make gpu-prep'")
m = json.loads(Path(".gpu/manifest.json").read_text())
if m["source_sha256"] != source_hash():
    sys.exit("gpu_check: .gpu/wheels/" + m["project_wheel"] + " was built from other sources than this tree: "
             "rerun 'make gpu-prep'")
EOF
    then exit 2; fi
    site=${SHIRG_GPU_SITE:-/tmp/shirg-gpu-site}
    echo "gpu_check: installing $(ls .gpu/wheels/*.whl | wc -l) wheels into $site"
    if ! timeout 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .gpu/wheels/*.whl; then
        echo "gpu_check: pip could not install .gpu/wheels (see above); rerun 'make gpu-prep'" >&2
        exit 2
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONSAFEPATH=1  # the installed project wheel, not the checkout's untranslated tasks/ layout
fi
exec "$py" gpu_kit/gpu_check.py "$@"
