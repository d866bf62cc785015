#!/usr/bin/env bash
# On the GPU machine: the stages under torchrun / accelerate launch, and distill's text side encoded once.
#   benchmarks/run_gpu_distributed.sh stages        # SD1.5 (random weights): encode 20,000 prompts and sample 64
#                                                   # images, 1 process vs 2 (on as many GPUs as there are, else
#                                                   # both on GPU 0: identity on CUDA, not scaling)
#   benchmarks/run_gpu_distributed.sh distill ARCH  # distill step time and memory, captions encoded per step vs cached
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
gpus=$(nvidia-smi --list-gpus | wc -l)
device=$([ "$gpus" -ge 2 ] && echo auto || echo cuda:0)
case "${1:-}" in
distill)
    arch=${2:?usage: $0 distill ARCH}
    python3 random_models.py "$arch" "/tmp/$arch-random" > /dev/null || exit 1
    for text in per-step cached; do
        python3 distill_throughput.py "/tmp/bench-$arch" --arch "$arch" --steps "${STEPS:-12}" --batch "${BATCH:-32}" \
            --text "$text" 2>/tmp/err.log | grep '^{' || tail -20 /tmp/err.log
    done ;;
stages)
    model=$(python3 random_models.py sd15 /tmp/sd15-random)
    work=$(mktemp -d); cd "$work"
    python3 -c "print('\n'.join(f'a photograph of object {i}, {i % 7} on a table near window {i % 13}' for i in range(20000)))" > p20k.txt
    head -64 p20k.txt > p64.txt
    seconds() { local start=$EPOCHREALTIME; "$@" > /dev/null 2>/tmp/stage.err || tail -5 /tmp/stage.err >&2; awk "BEGIN {print $EPOCHREALTIME - $start}"; }
    launch="python3 -m torch.distributed.run --nproc_per_node 2 -m dicecli"
    echo "{\"stage\": \"encode 20000 prompts\", \"gpus\": $gpus, \"one_process_s\": $(seconds python3 -m dicecli encode p20k.txt -m $model -o one.h5 --batch-size 256), \"two_processes_s\": $(seconds $launch encode p20k.txt -m $model -o two.h5 --batch-size 256 --device $device)}"
    [ "${ONLY:-}" = encode ] && exit 0
    common="p64.txt -m $model --steps 20 --batch-size 16 --height 512 --width 512"
    echo "{\"stage\": \"sample 64 images 512px\", \"gpus\": $gpus, \"one_process_s\": $(seconds python3 -m dicecli sample $common -o s1), \"two_processes_s\": $(seconds $launch sample $common -o s2 --device $device), \"accelerate_two_s\": $(seconds python3 -m accelerate.commands.launch --multi_gpu --num_processes 2 -m dicecli sample $common -o s3 --device $device)}"
    python3 - <<'PY'
import filecmp, json, os
import h5py, numpy as np
with h5py.File("one.h5") as a, h5py.File("two.h5") as b:
    cache = all(np.array_equal(a[k][:], b[k][:]) for k in a) and sorted(a) == sorted(b)
names = sorted(os.listdir("s1"))
same = lambda other: names == sorted(os.listdir(other)) and all(filecmp.cmp(f"s1/{n}", f"{other}/{n}", shallow=False) for n in names)
print(json.dumps({"cache_identical": cache, "torchrun_images_identical": same("s2"), "accelerate_images_identical": same("s3"),
                  "cache_mb": round(os.path.getsize("one.h5") / 2**20)}))
PY
    ;;
*)
    echo "usage: $0 stages | distill ARCH" >&2; exit 2 ;;
esac
