"""Alignment (toy evaluator) of unguided, CFG and DICE sampling on held-out toy prompts.

    python scripts/toy/toy_report.py ENHANCER.safetensors [--prompts 256] [--device cuda]

Prints one JSON line per setting: method, cfg, alpha, steps, NFE, alignment, seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from safetensors.torch import load_file

from dicecli.builtin import SHIPPED
from dicecli.enhancer import load_enhancer
from dicecli.families import load_adapter
from dicecli.recipes import resolve_model
from dicecli.sampling import generate
from dicecli.toyworld import AttributeNet, ToyWorld, alignment, read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("enhancer")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    evaluator = AttributeNet()
    evaluator.load_state_dict(load_file(str(SHIPPED["toy"].parent / "toy-evaluator.safetensors")))
    evaluator.to(device).eval()
    adapter = load_adapter(resolve_model("toy"), device, dtype)
    held = ToyWorld(size=args.prompts, seed=7, held_out=True)
    prompts = list(held[: args.prompts])
    cond = adapter.encode(prompts).conditioning.to(device)
    null = adapter.encode([""]).conditioning.to(device)
    enhancer, _ = load_enhancer(args.enhancer, device)

    def run(method: str, cfg: float, steps: int, alpha: float | None = None) -> None:
        c = cond
        if alpha is not None:
            with torch.no_grad():
                c = cond.with_embeds(enhancer(cond.prompt_embeds.float(), null.prompt_embeds.float(), alpha).to(dtype))
        start = time.time()
        images = []
        for s in range(0, len(prompts), 128):
            rows = list(range(s, min(s + 128, len(prompts))))
            images += generate(adapter, c[rows], null, cfg=cfg, steps=steps, scheduler="dpmsolver++", seeds=rows,
                               height=64, width=64)
        seconds = time.time() - start
        pixels = np.stack([np.asarray(image) for image in images])
        score = np.mean([alignment(held.scene(i).stated, r) for i, r in enumerate(read(evaluator, pixels, device))])
        print(json.dumps({"method": method, "cfg": cfg, "alpha": alpha, "steps": steps,
                          "nfe": steps * (2 if cfg > 1 else 1), "alignment": float(score), "seconds": seconds}), flush=True)

    run("unguided", 1.0, 20)
    run("CFG", 5.0, 20)
    run("CFG", 5.0, 10)
    run("DICE", 1.0, 20, alpha=1.0)
    for steps in (5, 10):
        run("unguided", 1.0, steps)
        run("DICE", 1.0, steps, alpha=1.0)
        run("CFG", 5.0, steps)
    for alpha in (0.5, 1.5, 2.0):
        run("DICE", 1.0, 20, alpha=alpha)


if __name__ == "__main__":
    main()
