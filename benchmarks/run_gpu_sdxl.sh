#!/usr/bin/env bash
# On the GPU machine: the real SDXL architecture with random weights, bf16, 1024 px.
#   benchmarks/run_gpu_sdxl.sh sample                 # DICE vs StableDiffusionXLPipeline CFG w=5, eager and compiled
#   benchmarks/run_gpu_sdxl.sh distill "SETUP" ...    # e.g. "--batch 4" "--batch 8 --compile" (one process each)
# Results go to stdout as JSON lines (and $OUT/sdxl-*.jsonl when OUT is set).
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 random_models.py sdxl /tmp/sdxl-random || exit 1
case "${1:-}" in
sample)
    rm -rf /tmp/sampling-sdxl  # `dice sample` resumes a folder: every run starts empty
    python3 sampling_throughput.py /tmp/sampling-sdxl --arch sdxl --batch "${BATCH:-8}" --repeats "${REPEATS:-2}" \
        --batches "${BATCHES:-2}" --no-unguided 2>/tmp/sampling.err | tee -a "$out/sdxl-sampling.jsonl" || tail -20 /tmp/sampling.err ;;
distill)
    shift
    for setup in "$@"; do
        python3 distill_throughput.py /tmp/bench --arch sdxl --steps "${STEPS:-12}" $setup 2>/tmp/err.log \
            | grep '^{' | tee -a "$out/sdxl-distill.jsonl" || tail -20 /tmp/err.log
    done ;;
*)
    echo "usage: $0 sample | distill SETUP..." >&2; exit 2 ;;
esac
