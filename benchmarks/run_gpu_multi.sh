#!/usr/bin/env bash
# On a machine with 2+ GPUs: `dice distill` under torchrun and accelerate launch (tiny-sd15, bf16).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DICE_HOME=/tmp/dh
nvidia-smi --query-gpu=name --format=csv,noheader
work=$(mktemp -d)
python3 - "$work" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
folder = Path(sys.argv[1]) / "data"; folder.mkdir()
rng = np.random.default_rng(0)
with open(folder / "metadata.jsonl", "w") as f:
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        f.write(json.dumps({"file_name": f"{i}.png", "text": f"a photo of thing {i}"}) + "\n")
PY
python3 -m dicecli recipes > /dev/null  # builds nothing; warms imports
args="distill --model tiny-sd15 --data $work/data --steps 20 --batch-size 16 --checkpoint-every 10 --no-compile --json"
echo "== one GPU";        python3 -m dicecli $args --work-dir $work/w1 -o $work/one.safetensors
echo "== torchrun x2";    torchrun --nproc_per_node 2 -m dicecli $args --work-dir $work/w2 -o $work/two.safetensors
echo "== accelerate x2";  accelerate launch --num_processes 2 -m dicecli $args --work-dir $work/w3 -o $work/three.safetensors
python3 - "$work" <<'PY'
import sys
from safetensors.torch import load_file
w = sys.argv[1]
one, two, three = (load_file(f"{w}/{n}.safetensors") for n in ("one", "two", "three"))
print("max |one - torchrun|", max((one[k] - two[k]).abs().max().item() for k in one))
print("max |one - accelerate|", max((one[k] - three[k]).abs().max().item() for k in one))
print("fc2 weight norm", one["fc2.weight"].norm().item())
PY
ls $work/w2/checkpoints $work/w3/checkpoints
