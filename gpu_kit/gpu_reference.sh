#!/usr/bin/env bash
# One-shot GPU training of the reference mini-LaViDa (shirg-train-reference), for the rare lent GPU.
#
#   bash gpu_kit/gpu_reference.sh                 # OUT=runs/gpu-reference by default; the device tool sets $OUT
#   DENSE_MIN=2.5 QA_MIN=2.5 bash gpu_kit/gpu_reference.sh
#
# The default recipe (700 tower steps of 256 crops, 900 answer steps of 16 images x 4 questions), with data rendered
# by every spare core and a wall-clock cap per stage as a safety net (with a cap the learning rate anneals by
# whichever of steps or time runs out first; the steps reached are in metrics.jsonl and the model card). Writes
# $OUT/reference.tgz (final model in LaViDa's layout, metrics.jsonl, recipe.json), $OUT/reference_eval.json (a
# quick GPU accuracy check per variant on the validation split) and $OUT/reference_train.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-reference}
DENSE_MIN=${DENSE_MIN:-2.5}
QA_MIN=${QA_MIN:-2.5}
EVAL_N=${EVAL_N:-60}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))}
RUN=${RUN_DIR:-/tmp/shirg-reference}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
log() { echo "[gpu_reference $(date +%T)] $*" | tee -a "$OUT/reference_train.log"; }

log "device: $($PY -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'), workers $WORKERS, /dev/shm $(df -h /dev/shm 2>/dev/null | awk 'NR==2 {print $4}') free"
$PY -m shirg_eval.cli.train_reference --out "$RUN" --overwrite --workers "$WORKERS" --threads 4 \
    --dense-minutes "$DENSE_MIN" --qa-minutes "$QA_MIN" --log-every 20 2>&1 | tr '\r' '\n' | awk 'NF && (NR % 50 == 1 || /Error|error|reference model|newest/)' \
    >> "$OUT/reference_train.log"
status=${PIPESTATUS[0]}
log "training exit status $status"
tail -n 3 "$RUN/metrics.jsonl" >> "$OUT/reference_train.log" 2>/dev/null
if [ -f "$RUN/final/model.safetensors" ]; then
    $PY -m shirg_eval.cli.eval_reference "$RUN/final" --n "$EVAL_N" \
        --variants lavida,lavida_384,lavida_672,shirg_fixed,random_k --json "$OUT/reference_eval.json" \
        2>&1 | grep -v -i warn | tee -a "$OUT/reference_train.log"
fi
# the model in LaViDa's layout and its log (checkpoints with optimizer state stay behind: they are 3x larger)
if [ -f "$RUN/final/model.safetensors" ]; then keep=final; else keep=$(cat "$RUN/latest" 2>/dev/null); fi
tar czf "$OUT/reference.tgz" --exclude=optimizer.pt -C "$RUN" $(cd "$RUN" && ls -d $keep metrics.jsonl recipe.json 2>/dev/null)
log "wrote $OUT/reference.tgz ($(du -h "$OUT/reference.tgz" | cut -f1))"
exit "$status"
