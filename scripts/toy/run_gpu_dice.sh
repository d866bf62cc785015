#!/usr/bin/env bash
# On the GPU machine: distil the reference enhancer on the shipped toy model, then measure alignment.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh
out=${OUT:-/tmp/out}
python3 -m dicecli encode --images toy:${SCENES:-20000} -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json
python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --steps ${STEPS:-2000} --batch-size 128 \
    --lr ${LR:-2e-4} --no-compile --work-dir /tmp/toy-run -o "$out/toy-dice.safetensors" --checkpoint-every 1000 --json
cp /tmp/toy-run/train_log.jsonl "$out/"
cp /tmp/toy-run/checkpoints/step-*/validation.png "$out/" 2>/dev/null
python3 scripts/toy/toy_report.py "$out/toy-dice.safetensors" --prompts ${PROMPTS:-256}
