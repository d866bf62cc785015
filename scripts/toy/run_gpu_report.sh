#!/usr/bin/env bash
# On the GPU machine, in two commands (each fits the 10-minute limit of a lent GPU):
#   scripts/toy/run_gpu_report.sh distill       # -> $OUT/toy-dice.safetensors, $OUT/toy-dice-negative.safetensors
#   scripts/toy/run_gpu_report.sh report DIR    # every setting of docs/toyworld.md with DIR's two enhancers
# STEPS (3000) and LR (1e-3) set both distillations; seeds are the tool's defaults (0). Then, here:
#   python scripts/toy/write_report.py --import-gpu OUT_OF_REPORT
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh
out=${OUT:-/tmp/out}
case "${1:-}" in
distill)
    python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
    python3 scripts/toy/toy_negatives.py > /tmp/toy-negatives.txt || exit 1
    distill() {  # name, --negative-prompts value
        python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --steps ${STEPS:-3000} --batch-size 128 \
            --lr ${LR:-1e-3} --negative-prompts "$2" --no-compile --work-dir /tmp/run-$1 -o "$out/$1.safetensors" \
            --checkpoint-every 1000 --json && cp /tmp/run-$1/train_log.jsonl "$out/$1-train_log.jsonl"
    }
    distill toy-dice none & distill toy-dice-negative /tmp/toy-negatives.txt & wait ;;
report)
    python3 scripts/toy/toy_report.py "$2/toy-dice.safetensors" "$2/toy-dice-negative.safetensors" \
        --out "$out" --prompts ${PROMPTS:-1024} ;;
*)
    echo "usage: $0 distill | report ENHANCER_DIR" >&2; exit 2 ;;
esac
