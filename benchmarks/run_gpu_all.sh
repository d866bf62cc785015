#!/usr/bin/env bash
# On the GPU machine: sampling throughput, then a few hundred distill steps (compiled) for the timing in docs/commands.md.
set -uo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/..:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 sampling_throughput.py /tmp/sampling 2>/tmp/sampling.err | grep '^{' || tail -5 /tmp/sampling.err
python3 distill_throughput.py /tmp/bench --arch sd15 --steps "${DISTILL_STEPS:-200}" --batch 32 --compile 2>/tmp/distill.err | grep '^{' || tail -5 /tmp/distill.err
