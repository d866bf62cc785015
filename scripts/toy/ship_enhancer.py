"""Store a distilled toy enhancer in float16 (same metadata): the shipped reference enhancer by default.

    python scripts/toy/ship_enhancer.py toy-dice.safetensors [OUT]   # OUT: dicecli/plugins/toy/toy-dice.safetensors
"""

import sys

import torch

from dicecli.enhancer import read_enhancer, save_enhancer
from dicecli.plugins.toy.world import ENHANCER_FILE

FORMAT_KEYS = {"format", "format_version", "context_dim", "inner_dim", "heads", "keep_first_token", "init",
               "dicecli_version", "stored_as"}

if __name__ == "__main__":
    enhancer, meta = read_enhancer(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else ENHANCER_FILE
    save_enhancer(enhancer, out, dtype=torch.float16,
                  **{k: v for k, v in meta.items() if k not in FORMAT_KEYS}, stored_as="float16")
    print(out)
