#!/usr/bin/env bash
# On the GPU machine: distill throughput of the real SD1.5 architecture, eager then compiled.
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 distill_throughput.py /tmp/bench --steps ${STEPS:-24} --batch 32
python3 distill_throughput.py /tmp/bench --steps ${STEPS:-24} --batch 64
if [ "${COMPILE:-1}" = 1 ]; then timeout 360 python3 distill_throughput.py /tmp/bench --steps ${STEPS:-24} --batch 32 --compile; fi
