#!/usr/bin/env bash
# On a GPU machine, the toy world's GPU runs in commands that each fit a lent GPU's 10-minute limit
# (results in $OUT; bring them back, carry them into the next command):
#   scripts/toy/run_gpu.sh build             # build_toy.py: evaluator and model side by side -> $OUT/build/
#                                            #   (toy.tar.part-* under 16 MiB, toy-evaluator.safetensors, *.json)
#   scripts/toy/run_gpu.sh install BUILD     # put a returned build folder's model and evaluator in the plug-in
#   scripts/toy/run_gpu.sh distill [RUN...]  # with the model in dicecli/plugins/toy/: the latent cache, then side by
#                                            #   side the named runs (default: all) of RUNS below, `gd` (the GD
#                                            #   baseline) and `oracle`, each stopped after DISTILL_SECONDS at the
#                                            #   latest -> $OUT/distill.tar.part-*. One GPU in 10 minutes fits about
#                                            #   three: `distill lr1e-3 cosine oracle`, then `distill negative gd`.
#   scripts/toy/run_gpu.sh report DISTILL    # the unpacked distill folder (several merged into one): toy_report.py
#                                            #   with its enhancers and GD UNet -> $OUT/report.tar.part-* (unpack,
#                                            #   then python scripts/toy/write_report.py --import report)
#   scripts/toy/run_gpu.sh ablate DISTILL RUN...  # the named enhancers of a distill folder, each with and without
#                                            #   negative prompts, beside unguided and CFG -> $OUT/ablate/
#                                            #   (write_report.py --import-null-share DIR for null0.2 null0.5 null1)
#   scripts/toy/run_gpu.sh pnp               # the latent cache, then the Plug-and-Play guide for GD's time budget
#                                            #   (plug_and_play.py) -> $OUT/pnp/ (guide/, pnp.json)
#   scripts/toy/run_gpu.sh pnp-report PNP    # a returned pnp folder: its row at the Table 1 setting, beside unguided
#                                            #   -> $OUT/pnp-report/ (python scripts/toy/write_report.py --import-pnp DIR)
#   scripts/toy/run_gpu.sh curve             # quality over training with the tools a user has: the latent cache, the
#                                            #   Table 1 run (lr 1e-3) keeping every checkpoint, `dice sample --enhancer
#                                            #   WORK_DIR` on the held-out pairs and `dice eval --metrics toy`
#                                            #   -> $OUT/curve/ (python scripts/toy/write_report.py --import-curve DIR)
#   scripts/toy/run_gpu.sh rebuild           # the recorded model build again (same seeds and steps), then Table 1
#                                            #   on it with the shipped enhancer -> $OUT/rebuild/
#                                            #   (python scripts/toy/write_report.py --import-rebuild DIR)
# Seeds are fixed in the scripts (docs/toyworld.md says which). The GPU machine has no diffusers and no clean-fid
# (toy FID, `dice eval --metrics toy`): carry their wheels (`pip download --no-deps diffusers clean-fid ... -d .whl`)
# and `python3 -m pip install --no-deps .whl/*.whl` first.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh OMP_NUM_THREADS=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
d=/tmp/distill
# Distillation runs: name | `dice distill` options (the toy recipe's settings unless given). An EMA does not change
# the trajectory, so lr1e-3 (Table 1's DICE) also yields its average, lr1e-3-ema.
RUNS=(
    "lr1e-3|--lr 1e-3 --ema 0.999"
    "cosine|--lr 1e-3 --lr-schedule cosine --warmup-steps 100"
    "negative|--lr 1e-3 --negative-prompts /tmp/toy-negatives.txt"
    "reference|--lr 2e-4"
    "lr3e-3|--lr 3e-3"
    "logit-normal|--lr 1e-3 --timesteps logit-normal"
    "batch256|--lr 1e-3 --batch-size 256 --steps 1500"
    "null0.2|--lr 1e-3 --negative-prompts /tmp/toy-negatives.txt --null-share 0.2 --steps 1000"
    "null0.5|--lr 1e-3 --negative-prompts /tmp/toy-negatives.txt --null-share 0.5 --steps 1000"
    "null1|--lr 1e-3 --negative-prompts /tmp/toy-negatives.txt --null-share 1 --steps 1000"
)
CURVE=lr1e-3  # the run whose every checkpoint is kept: alignment against distillation steps

install_build() {  # put BUILD's model and evaluator where the toy plug-in reads them
    [ -f "$1/toy-evaluator.safetensors" ] || { echo "$1 holds no toy-evaluator.safetensors" >&2; exit 1; }
    rm -rf dicecli/plugins/toy/model && mkdir -p /tmp/unpack && cat "$1"/toy.tar.part-* | tar -C /tmp/unpack -xf - &&
        mv /tmp/unpack/toy dicecli/plugins/toy/model && cp "$1/toy-evaluator.safetensors" dicecli/plugins/toy/ || exit 1
}
half() { python3 scripts/toy/ship_enhancer.py "$1" "$2" > /dev/null; }  # a float16 copy, as the shipped enhancer
distill() {  # name, options...: stopped after DISTILL_SECONDS at the latest; its last checkpoint is the result
    local name=$1 last c
    shift
    mkdir -p "/tmp/run-$name"
    # shellcheck disable=SC2086
    timeout ${DISTILL_SECONDS:-470} python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --no-compile \
        --work-dir "/tmp/run-$name" -o "/tmp/run-$name/final.safetensors" --checkpoint-every 500 --no-validate \
        --json "$@" > "$d/$name.log" 2>&1
    cp "/tmp/run-$name/train_log.jsonl" "$d/$name-train_log.jsonl"
    last=$(ls -d /tmp/run-"$name"/checkpoints/step-* 2>/dev/null | tail -1)
    [ -n "$last" ] || { echo "$name left no checkpoint" >> "$d/$name.log"; return; }
    half "$last/enhancer.safetensors" "$d/$name.safetensors"
    [ ! -f "$last/enhancer-ema.safetensors" ] || half "$last/enhancer-ema.safetensors" "$d/$name-ema.safetensors"
    if [ "$name" = "$CURVE" ]; then
        for c in /tmp/run-"$name"/checkpoints/step-*; do half "$c/enhancer.safetensors" "$d/$name-${c##*step-}.safetensors"; done
    fi
    echo "$name $last" >> "$d/checkpoints.txt"
}

case "${1:-}" in
build)
    mkdir -p "$out/build"
    # shellcheck disable=SC2086
    python3 scripts/toy/build_toy.py /tmp/build --only evaluator ${EVAL_ARGS:-} > "$out/build/evaluator.log" 2>&1 &
    # shellcheck disable=SC2086
    python3 scripts/toy/build_toy.py /tmp/build --only model --reuse dicecli/plugins/toy/model ${MODEL_ARGS:-} \
        > "$out/build/model.log" 2>&1
    wait
    cp /tmp/build/*.json /tmp/build/toy-evaluator.safetensors "$out/build/"
    tar -C /tmp/build -cf - toy | split -b 15M - "$out/build/toy.tar.part-" ;;
install)
    install_build "$2" ;;
distill)
    shift
    names=("$@")
    # shellcheck disable=SC2207
    [ ${#names[@]} -gt 0 ] || names=($(printf '%s\n' "${RUNS[@]}" | cut -d'|' -f1) gd oracle)
    mkdir -p $d
    python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
    python3 scripts/toy/toy_negatives.py > /tmp/toy-negatives.txt || exit 1
    for name in "${names[@]}"; do
        case $name in
        gd) { timeout "${DISTILL_SECONDS:-470}" python3 scripts/toy/guidance_distill.py /tmp/toy-latents.h5 $d/gd \
                --max-seconds "${GD_SECONDS:-330}" > "$d/gd.log" 2>&1 && cp $d/gd/gd.json $d/; } & ;;
        oracle) timeout "${DISTILL_SECONDS:-470}" python3 scripts/toy/oracle.py --steps 100000 \
                --score-at 1000,2000,4000,8000 --max-seconds "${ORACLE_SECONDS:-330}" --out $d/oracle.json \
                > "$d/oracle.log" 2>&1 & ;;
        *)  entry=$(printf '%s\n' "${RUNS[@]}" | grep "^$name|") || { echo "no run named $name" >&2; exit 2; }
            # shellcheck disable=SC2086
            distill "$name" ${entry#*|} & ;;
        esac
    done
    wait
    tar -C /tmp -cf - distill | split -b 15M - "$out/distill.tar.part-" ;;  # a GPU machine returns at most 8 files
report)
    [ -f "$2/checkpoints.txt" ] || { echo "$2 holds no checkpoints.txt; give the unpacked distill folder" >&2; exit 1; }
    r=/tmp/report; mkdir -p $r
    args=()
    for f in "$2"/*.safetensors; do  # every other enhancer is scored at the Table 1 setting too
        name=$(basename "$f" .safetensors)
        [ "$name" = negative ] || args+=(--ablation "$name=$f")
    done
    python3 scripts/toy/toy_report.py --enhancer "$2/lr1e-3.safetensors" --negative-enhancer "$2/negative.safetensors" \
        --gd "$2/gd/unet" "${args[@]}" --out $r > $r/report.log 2>&1
    cp "$2"/*-train_log.jsonl "$2/checkpoints.txt" "$2/gd.json" "$2/oracle.json" "$2/lr1e-3.safetensors" $r/
    tar -C /tmp -cf - report | split -b 15M - "$out/report.tar.part-" ;;
ablate)
    folder=${2:?ablate needs the distill folder and the runs to score}; shift 2
    args=()
    [ $# -gt 0 ] || { echo "ablate: name the runs to score (e.g. null0.2 null0.5 null1)" >&2; exit 2; }
    for name in "$@"; do
        [ -f "$folder/$name.safetensors" ] || { echo "$folder holds no $name.safetensors; run distill $name first" >&2; exit 1; }
        args+=(--ablation "$name=$folder/$name.safetensors" --negative-ablation "$name=$folder/$name.safetensors")
    done
    mkdir -p "$out/ablate"
    python3 scripts/toy/toy_report.py --ablations-only --enhancer "$folder/$1.safetensors" \
        --negative-enhancer "$folder/$1.safetensors" "${args[@]}" --out /tmp/ablate > "$out/ablate/report.log" 2>&1
    cp /tmp/ablate/toy-report.json /tmp/ablate/toy-features-*.npz "$out/ablate/" ;;
pnp)
    mkdir -p "$out/pnp"
    python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
    python3 scripts/toy/plug_and_play.py /tmp/toy-latents.h5 /tmp/pnp --max-seconds "${PNP_SECONDS:-420}" \
        > "$out/pnp/train.log" 2>&1 || exit 1
    cp -r /tmp/pnp/guide /tmp/pnp/pnp.json "$out/pnp/" ;;
pnp-report)
    [ -f "$2/pnp.json" ] || { echo "$2 holds no pnp.json; give the folder run_gpu.sh pnp returned" >&2; exit 1; }
    mkdir -p "$out/pnp-report"
    python3 scripts/toy/toy_report.py --pnp-only --pnp "$2/guide" --enhancer dicecli/plugins/toy/toy-dice.safetensors \
        --negative-enhancer dicecli/plugins/toy/toy-dice.safetensors --out /tmp/pnp-report > "$out/pnp-report/report.log" 2>&1
    cp /tmp/pnp-report/toy-report.json /tmp/pnp-report/toy-features-*.npz "$2/pnp.json" "$out/pnp-report/" ;;
curve)
    mkdir -p "$out/curve"
    python3 -m dicecli encode --images toy:20000 -o /tmp/toy-latents.h5 --model toy --batch-size 512 --json || exit 1
    python3 -c "from dicecli.plugins.toy.world import evaluation_set; print('\n'.join(evaluation_set('held_out_pairs', 1024)[0]))" \
        > /tmp/held-out.txt || exit 1
    timeout "${DISTILL_SECONDS:-470}" python3 -m dicecli distill --model toy --data /tmp/toy-latents.h5 --lr 1e-3 \
        --no-compile --no-validate --checkpoint-every "${EVERY:-250}" --keep-checkpoints 0 --work-dir /tmp/run-curve \
        -o /tmp/run-curve/final.safetensors --json > "$out/curve/distill.log" 2>&1
    python3 -m dicecli sample /tmp/held-out.txt --enhancer /tmp/run-curve -o /tmp/curve --batch-size 256 --json \
        > "$out/curve/sample.log" 2>&1 || exit 1
    python3 -m dicecli eval /tmp/curve --metrics toy -o "$out/curve/report" --json > /dev/null 2>> "$out/curve/sample.log" ;;
rebuild)
    steps=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["unet"]["steps"])' \
            scripts/toy/results/build-model-*.json) || exit 1
    mkdir -p "$out/rebuild"
    python3 scripts/toy/build_toy.py /tmp/build --only model --reuse dicecli/plugins/toy/model --steps-unet "$steps" \
        > "$out/rebuild/model.log" 2>&1 || exit 1
    cp /tmp/build/report.json "$out/rebuild/build-model.json"
    rm -rf dicecli/plugins/toy/model && mv /tmp/build/toy dicecli/plugins/toy/model
    python3 scripts/toy/toy_report.py --table-only --enhancer dicecli/plugins/toy/toy-dice.safetensors \
        --negative-enhancer dicecli/plugins/toy/toy-dice.safetensors --out /tmp/rebuild > "$out/rebuild/report.log" 2>&1
    cp /tmp/rebuild/toy-report.json /tmp/rebuild/toy-features-*.npz "$out/rebuild/" ;;
*)
    echo "usage: $0 build | install BUILD | distill [RUN...] | report DISTILL | ablate DISTILL RUN... | pnp | pnp-report PNP | curve | rebuild" >&2
    exit 2 ;;
esac
