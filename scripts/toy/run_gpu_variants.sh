#!/usr/bin/env bash
# On a GPU machine: toy-model variants side by side, one per GPU (round robin), in two commands
# that each fit a lent GPU's 10-minute limit:
#   scripts/toy/run_gpu_variants.sh build NAME "BUILD_TOY ARGS" [NAME "ARGS" ...]
#       build_toy.py --reuse dicecli/models (the shipped VAE and evaluator: neither depends on the
#       text side) -> /tmp/variants/NAME/toy and its tar in < 16 MiB parts /tmp/variants/NAME/toy.tar.part-*;
#       $OUT/NAME.log (ends with the build's report.json)
#   scripts/toy/run_gpu_variants.sh distill NAME [NAME ...]
#       per variant, as the built-in `toy`: `dice distill` (null prompt; STEPS 3000, LR 1e-3), then the
#       Table 1 settings on PROMPTS (512) held-out prompts -> $OUT/NAME.tar (toy-dice.safetensors,
#       train_log.jsonl, toy-report.json, distill.log); the parts of the variant whose DICE closes the
#       largest share of the unguided-to-CFG gap -> $OUT/best/ (a GPU machine returns at most 8 files).
# On a fresh machine `distill` unpacks a variant from .toyv2/NAME/toy.tar.part-* (carry .toyv2).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
usage="usage: $0 build NAME ARGS [NAME ARGS ...] | distill NAME [NAME ...]"
stage=${1:-}; shift
case $stage in
build) [ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "$usage" >&2; exit 2; } ;;
distill) [ $# -ge 1 ] || { echo "$usage" >&2; exit 2; } ;;
*) echo "$usage" >&2; exit 2 ;;
esac
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$gpus" -gt 0 ] || { echo "$0: nvidia-smi lists no GPU; run this on the GPU machine." >&2; exit 1; }
out=${OUT:-/tmp/out}; mkdir -p "$out"
i=${FIRST_GPU:-0}  # GPUs from FIRST_GPU on, round robin
case $stage in
build)
    while [ $# -ge 2 ]; do
        name=$1 args=$2; shift 2
        (
            export CUDA_VISIBLE_DEVICES=$((i % gpus)) PYTHONPATH="$repo:${PYTHONPATH:-}"
            # shellcheck disable=SC2086  # ARGS is a list of options
            python3 scripts/toy/build_toy.py "/tmp/variants/$name" --reuse dicecli/models $args
            cat "/tmp/variants/$name/report.json"
            tar -C "/tmp/variants/$name" -cf - toy | split -b 15M - "/tmp/variants/$name/toy.tar.part-"
        ) > "$out/$name.log" 2>&1 &
        i=$((i + 1))
    done ;;
distill)
    for name in "$@"; do
        mkdir -p "/tmp/distill/$name"
        (
            export CUDA_VISIBLE_DEVICES=$((i % gpus)) DICE_HOME="/tmp/dh-$name"
            if [ ! -d "/tmp/variants/$name/toy" ]; then
                mkdir -p "/tmp/variants/$name" && cp ".toyv2/$name"/toy.tar.part-* "/tmp/variants/$name/" &&
                    cat "/tmp/variants/$name"/toy.tar.part-* | tar -C "/tmp/variants/$name" -xf - || exit 1
            fi
            copy="/tmp/repo-$name"  # the variant stands in for the built-in model in a copy of the repo
            rm -rf "$copy" && mkdir -p "$copy" && cp -r dicecli scripts recipes pyproject.toml "$copy/" || exit 1
            rm -rf "$copy/dicecli/models/toy" && cp -r "/tmp/variants/$name/toy" "$copy/dicecli/models/toy" || exit 1
            cd "$copy" && export PYTHONPATH="$copy:${PYTHONPATH:-}"
            python3 -m dicecli encode --images toy:20000 -o "/tmp/latents-$name.h5" --model toy --batch-size 512 --json &&
            python3 -m dicecli distill --model toy --data "/tmp/latents-$name.h5" --steps "${STEPS:-3000}" --batch-size 128 \
                --lr "${LR:-1e-3}" --negative-prompts none --no-compile --work-dir "/tmp/run-$name" \
                -o "/tmp/distill/$name/toy-dice.safetensors" --checkpoint-every 1000 --json &&
            cp "/tmp/run-$name/train_log.jsonl" "/tmp/distill/$name/" &&
            python3 scripts/toy/toy_report.py "/tmp/distill/$name/toy-dice.safetensors" \
                "/tmp/distill/$name/toy-dice.safetensors" --out "/tmp/distill/$name" --prompts "${PROMPTS:-512}" --table-only
        ) > "/tmp/distill/$name/distill.log" 2>&1 &
        i=$((i + 1))
    done
    wait
    for name in "$@"; do tar -C /tmp/distill -cf "$out/$name.tar" "$name"; done
    best=$(python3 - "$@" <<'PY'
import json, sys
closed = {}
for name in sys.argv[1:]:
    try:
        rows = {r["name"]: r["alignment"] for r in json.load(open(f"/tmp/distill/{name}/toy-report.json"))["rows"]}
        closed[name] = (rows["dice"] - rows["unguided"]) / (rows["cfg5"] - rows["unguided"])
    except (OSError, KeyError, ZeroDivisionError):
        pass
print(max(closed, key=closed.get) if closed else "")
PY
)
    [ -n "$best" ] && mkdir -p "$out/best" && cp "/tmp/variants/$best"/toy.tar.part-* "$out/best/" && echo "$best" > "$out/best/name" ;;
esac
wait
