#!/usr/bin/env bash
# On the GPU machine: the investigation variants side by side on one GPU; results in $OUT/investigate.jsonl.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp/out}
for v in ${VARIANTS:-reference lr1e-3 lr3e-3 l2 high-t free}; do
    python3 scripts/toy/investigate.py "$v" --steps ${STEPS:-3000} --max-seconds ${MAX_SECONDS:-360} \
        --out "$out/investigate.jsonl" > "$out/$v.log" 2>&1 &
done
wait
nvidia-smi --query-gpu=name --format=csv,noheader > "$out/device.txt"
