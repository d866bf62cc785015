#!/usr/bin/env bash
# The README's main job, offline on the shipped toy model: distil CFG into an enhancer, sample
# unguided, with DICE (the enhancer just distilled, and the shipped reference one) and with CFG,
# then score all four folders with the toy evaluator. Measured 3.5 minutes on a 2-core CPU.
# Run from the repository root; every step is one line and can be run on its own.
set -euo pipefail
dice distill --model toy --data toy:5000 --steps 60 --batch-size 16 --lr 1e-2 -o toy-mine.safetensors
dice sample examples/toy-prompts.txt --model toy --num-per-prompt 2 -o unguided/
dice sample examples/toy-prompts.txt --enhancer toy-mine.safetensors --num-per-prompt 2 -o dice-mine/
dice sample examples/toy-prompts.txt --enhancer toy --num-per-prompt 2 -o dice-ref/
dice sample examples/toy-prompts.txt --model toy --cfg 5 --num-per-prompt 2 -o cfg/
dice eval unguided/ dice-mine/ dice-ref/ cfg/ --metrics toy
