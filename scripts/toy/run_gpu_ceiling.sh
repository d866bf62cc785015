#!/usr/bin/env bash
# On the GPU machine: longer free-embedding ceiling runs side by side, then (with ENHANCERS=DIR holding
# toy-dice*.safetensors) the report settings again. Results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp/out}
for v in ${VARIANTS:-free free-l2 free-lr3e-2}; do
    python3 scripts/toy/investigate.py "$v" --steps ${STEPS:-6000} --max-seconds ${MAX_SECONDS:-300} \
        --out "$out/ceiling.jsonl" > "/tmp/$v.log" 2>&1 &
done
wait
tail -n 2 /tmp/free*.log
if [ -n "${ENHANCERS:-}" ]; then  # the report's settings again (run_gpu_report.sh report)
    scripts/toy/run_gpu_report.sh report "$ENHANCERS" > "$out/report.log" 2>&1
fi
