#!/usr/bin/env bash
# On the GPU machine: a family's real architecture with random weights, bf16, native size.
#   benchmarks/run_gpu_family.sh sdxl|pixart|pixart-1024 sample              # DICE vs the family's diffusers pipeline, CFG w=5
#   benchmarks/run_gpu_family.sh sdxl|pixart distill "SETUP" ... # e.g. "--batch 8" "--batch 8 --compile" (one process each)
# Results go to stdout as JSON lines (and $OUT/ARCH-*.jsonl when OUT is set).
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp}
arch=${1:?usage: $0 ARCH sample|distill SETUP...}
shift
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 random_models.py "$arch" "/tmp/$arch-random" || exit 1
case "${1:-}" in
sample)
    rm -rf "/tmp/sampling-$arch"  # `dice sample` resumes a folder: every run starts empty
    python3 sampling_throughput.py "/tmp/sampling-$arch" --arch "$arch" --batch "${BATCH:-8}" --repeats "${REPEATS:-2}" \
        --batches "${BATCHES:-2}" --no-unguided 2>/tmp/sampling.err | tee -a "$out/$arch-sampling.jsonl" || tail -20 /tmp/sampling.err ;;
distill)
    shift
    for setup in "$@"; do
        python3 distill_throughput.py /tmp/bench --arch "$arch" --steps "${STEPS:-12}" $setup 2>/tmp/err.log \
            | grep '^{' | tee -a "$out/$arch-distill.jsonl" || tail -20 /tmp/err.log
    done ;;
*)
    echo "usage: $0 ARCH sample | distill SETUP..." >&2; exit 2 ;;
esac
