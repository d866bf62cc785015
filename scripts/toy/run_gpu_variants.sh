#!/usr/bin/env bash
# On a GPU machine: toy-model variants side by side, one per GPU (round robin), in two commands
# that each fit a lent GPU's 10-minute limit:
#   scripts/toy/run_gpu_variants.sh build NAME "BUILD_TOY ARGS" [NAME "ARGS" ...]
#       build_toy.py --reuse dicecli/models (the shipped VAE and evaluator: neither depends on the
#       text side) -> /tmp/variants/NAME/toy; $OUT/NAME/{report.json,build.log} and the pipeline as
#       $OUT/NAME/toy.tar.part-* (a file returned from the GPU machine may hold at most 16 MiB)
#   scripts/toy/run_gpu_variants.sh distill NAME [NAME ...]
#       per variant, as the built-in `toy`: `dice distill` (null prompt; STEPS 3000, LR 1e-3), then the
#       Table 1 settings on PROMPTS (512) held-out prompts -> $OUT/NAME/{toy-dice.safetensors,
#       train_log.jsonl,toy-report.json,distill.log}
# On a fresh machine `distill` unpacks a variant from .toyv2/NAME/toy.tar.part-* (carry .toyv2).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp/out}
gpus=$(nvidia-smi -L | wc -l)
stage=${1:-}; shift
i=0
case $stage in
build)
    while [ $# -ge 2 ]; do
        name=$1 args=$2; shift 2
        mkdir -p "$out/$name"
        (
            export CUDA_VISIBLE_DEVICES=$((i % gpus)) PYTHONPATH="$repo:${PYTHONPATH:-}"
            # shellcheck disable=SC2086  # ARGS is a list of options
            python3 scripts/toy/build_toy.py "/tmp/variants/$name" --reuse dicecli/models $args
            cp "/tmp/variants/$name/report.json" "$out/$name/"
            tar -C "/tmp/variants/$name" -cf - toy | split -b 15M - "$out/$name/toy.tar.part-"
        ) > "$out/$name/build.log" 2>&1 &
        i=$((i + 1))
    done ;;
distill)
    for name in "$@"; do
        mkdir -p "$out/$name"
        (
            export CUDA_VISIBLE_DEVICES=$((i % gpus)) DICE_HOME="/tmp/dh-$name"
            if [ ! -d "/tmp/variants/$name/toy" ]; then
                mkdir -p "/tmp/variants/$name" && cat ".toyv2/$name"/toy.tar.part-* | tar -C "/tmp/variants/$name" -xf - || exit 1
            fi
            copy="/tmp/repo-$name"  # the variant stands in for the built-in model in a copy of the repo
            rm -rf "$copy" && mkdir -p "$copy" && cp -r dicecli scripts recipes pyproject.toml "$copy/" || exit 1
            rm -rf "$copy/dicecli/models/toy" && cp -r "/tmp/variants/$name/toy" "$copy/dicecli/models/toy" || exit 1
            cd "$copy" && export PYTHONPATH="$copy:${PYTHONPATH:-}"
            python3 -m dicecli encode --images toy:20000 -o "/tmp/latents-$name.h5" --model toy --batch-size 512 --json &&
            python3 -m dicecli distill --model toy --data "/tmp/latents-$name.h5" --steps "${STEPS:-3000}" --batch-size 128 \
                --lr "${LR:-1e-3}" --negative-prompts none --no-compile --work-dir "/tmp/run-$name" \
                -o "$out/$name/toy-dice.safetensors" --checkpoint-every 1000 --json &&
            cp "/tmp/run-$name/train_log.jsonl" "$out/$name/" &&
            python3 scripts/toy/toy_report.py "$out/$name/toy-dice.safetensors" "$out/$name/toy-dice.safetensors" \
                --out "$out/$name" --prompts "${PROMPTS:-512}" --table-only
        ) > "$out/$name/distill.log" 2>&1 &
        i=$((i + 1))
    done ;;
*)
    echo "usage: $0 build NAME ARGS [NAME ARGS ...] | distill NAME [NAME ...]" >&2; exit 2 ;;
esac
wait
