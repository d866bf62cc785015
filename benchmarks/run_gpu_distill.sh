#!/usr/bin/env bash
# On the GPU machine: distill throughput of the real SD1.5 architecture (random weights).
# Each argument is one set-up, e.g. "--batch 32" "--batch 32 --compile" "--batch 32 --text per-step".
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
for setup in "$@"; do
    python3 distill_throughput.py /tmp/bench --arch sd15 --steps "${STEPS:-24}" $setup 2>/tmp/err.log | grep '^{' || tail -3 /tmp/err.log
done
