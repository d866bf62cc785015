#!/usr/bin/env bash
# On a GPU machine, the toy world's GPU runs in commands that each fit a lent GPU's 10-minute limit
# (results in $OUT; bring them back, carry them into the next command):
#   scripts/toy/run_gpu.sh build             # build_toy.py: evaluator and model side by side -> $OUT/build/
#                                            #   (toy.tar.part-* under 16 MiB, toy-evaluator.safetensors, *.json)
#   scripts/toy/run_gpu.sh distill           # with the model in dicecli/plugins/toy/ (install a build there first:
#                                            #   install BUILD): the latent cache, then side by side the
#                                            #   distillation ablation (`dice distill`, stopped after DISTILL_SECONDS,
#                                            #   the last checkpoint kept) and the GD baseline -> $OUT/distill.tar.part-*
#   scripts/toy/run_gpu.sh report DISTILL    # the unpacked distill folder: toy_report.py with its enhancers and GD
#                                            #   UNet, the oracle beside it -> $OUT/report.tar.part-* (unpack, then
#                                            #   python scripts/toy/write_report.py --import report)
#   scripts/toy/run_gpu.sh install BUILD     # put a returned build folder's model and evaluator in the plug-in
# Seeds are fixed in the scripts (docs/toyworld.md says which).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh OMP_NUM_THREADS=1
out=${OUT:-/tmp/out}
install_build() {  # put BUILD's model and evaluator where the toy plug-in reads them
    [ -f "$1/toy-evaluator.safetensors" ] || { echo "$1 holds no toy-evaluator.safetensors" >&2; exit 1; }
    rm -rf dicecli/plugins/toy/model && mkdir -p /tmp/unpack && cat "$1"/toy.tar.part-* | tar -C /tmp/unpack -xf - &&
        mv /tmp/unpack/toy dicecli/plugins/toy/model && cp "$1/toy-evaluator.safetensors" dicecli/plugins/toy/ || exit 1
}
# The ablation: name and `dice distill` options (the toy recipe's settings unless given).
ABLATION=(
    "reference|--lr 2e-4"
    "lr1e-3|--lr 1e-3"
    "lr3e-3|--lr 3e-3"
    "cosine|--lr 1e-3 --lr-schedule cosine --warmup-steps 100"
    "ema|--lr 1e-3 --ema 0.999"
    "logit-normal|--lr 1e-3 --timesteps logit-normal"
    "batch256|--lr 1e-3 --batch-size 256 --steps 1500"
)
case "${1:-}" in
build)
    mkdir -p "$out/build"
    python3 scripts/toy/build_toy.py /tmp/build --only evaluator ${EVAL_ARGS:-} > "$out/build/evaluator.log" 2>&1 &
    python3 scripts/toy/build_toy.py /tmp/build --only model --reuse dicecli/plugins/toy/model ${MODEL_ARGS:-} \
        > "$out/build/model.log" 2>&1
    wait
    cp /tmp/build/*.json /tmp/build/toy-evaluator.safetensors "$out/build/"
    tar -C /tmp/build -cf - toy | split -b 15M - "$out/build/toy.tar.part-" ;;
install)
    install_build "$2" ;;
distill)
    d=/tmp/distill; mkdir -p $d
    python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
    python3 scripts/toy/toy_negatives.py > /tmp/toy-negatives.txt || exit 1
    distill() {  # name, options...: stopped after DISTILL_SECONDS like the recorded runs, then its last checkpoint
        local name=$1; shift
        # shellcheck disable=SC2086
        timeout ${DISTILL_SECONDS:-470} python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --no-compile \
            --work-dir "/tmp/run-$name" -o "$d/$name.safetensors" --checkpoint-every 500 --no-validate --json "$@" \
            > "$d/$name.log" 2>&1
        cp "/tmp/run-$name/train_log.jsonl" "$d/$name-train_log.jsonl"
        last=$(ls -d /tmp/run-$name/checkpoints/step-* 2>/dev/null | tail -1)
        if [ ! -f "$d/$name.safetensors" ]; then  # the average where --ema kept one, else the weights
            if [ -f "$last/enhancer-ema.safetensors" ]; then cp "$last/enhancer-ema.safetensors" "$d/$name.safetensors"
            else cp "$last/enhancer.safetensors" "$d/$name.safetensors"; fi
        fi
        echo "$name $last" >> "$d/checkpoints.txt"
    }
    for entry in "${ABLATION[@]}"; do
        # shellcheck disable=SC2086
        distill "${entry%%|*}" ${entry#*|} &
    done
    distill negative --lr 1e-3 --negative-prompts /tmp/toy-negatives.txt &
    timeout ${DISTILL_SECONDS:-470} python3 scripts/toy/guidance_distill.py /tmp/toy-latents.h5 $d/gd \
        --max-seconds ${GD_SECONDS:-330} > "$d/gd.log" 2>&1 &
    wait
    cp $d/gd/gd.json $d/
    tar -C /tmp -cf - distill | split -b 15M - "$out/distill.tar.part-" ;;  # a GPU machine returns at most 8 files
report)
    [ -f "$2/checkpoints.txt" ] || { echo "$2 holds no checkpoints.txt; give the unpacked distill folder" >&2; exit 1; }
    r=/tmp/report; mkdir -p $r
    timeout 330 python3 scripts/toy/oracle.py --max-seconds ${ORACLE_SECONDS:-230} --out $r/oracle.json > $r/oracle.log 2>&1 &
    args=()
    for entry in "${ABLATION[@]}"; do
        name=${entry%%|*}
        args+=(--ablation "$name=$2/$name.safetensors")
    done
    python3 scripts/toy/toy_report.py --enhancer "$2/lr1e-3.safetensors" --negative-enhancer "$2/negative.safetensors" \
        --gd "$2/gd/unet" "${args[@]}" --out $r > $r/report.log 2>&1
    wait
    cp "$2"/*-train_log.jsonl "$2/checkpoints.txt" "$2/gd.json" "$2/lr1e-3.safetensors" "$2/negative.safetensors" $r/
    tar -C /tmp -cf - report | split -b 15M - "$out/report.tar.part-" ;;
*)
    echo "usage: $0 build | install BUILD | distill | report DISTILL" >&2; exit 2 ;;
esac
