#!/usr/bin/env bash
# The GPU run kit lives in gpu_kit/ (shirg_eval/bench/ is the shirg-bench library). This path is kept because the
# workplace's standing instructions for a lent GPU say `bash bench/gpu_check.sh`; it runs the kit unchanged.
exec bash "$(dirname "$0")/../gpu_kit/gpu_check.sh" "$@"
