#!/usr/bin/env bash
# On the GPU machine: distil the toy reference enhancers with `dice distill`, then run every setting of
# docs/toyworld.md (scripts/toy/toy_report.py). Everything the report needs lands in $OUT.
#   STEPS (3000) and LR (1e-3) set both distillations; seeds are the tool's defaults (0).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh
out=${OUT:-/tmp/out}
python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
python3 scripts/toy/toy_negatives.py > /tmp/toy-negatives.txt || exit 1
distill() {  # name, --negative-prompts value
    python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --steps ${STEPS:-3000} --batch-size 128 \
        --lr ${LR:-1e-3} --negative-prompts "$2" --no-compile --work-dir /tmp/run-$1 -o "$out/$1.safetensors" \
        --checkpoint-every 1000 --json && cp /tmp/run-$1/train_log.jsonl "$out/$1-train_log.jsonl"
}
distill toy-dice none & distill toy-dice-negative /tmp/toy-negatives.txt & wait
python3 scripts/toy/toy_report.py "$out/toy-dice.safetensors" "$out/toy-dice-negative.safetensors" \
    --out "$out" --prompts ${PROMPTS:-1024}
