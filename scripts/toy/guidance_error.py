"""Guidance error of toy enhancers on held-out prompts (CPU is enough): how much CFG each recovers.

    python scripts/toy/guidance_error.py NAME=ENHANCER [NAME=ENHANCER ...] [--prompts 48] [--out F.json]

For the first PROMPTS prompts of the held-out-pairs evaluation set, fresh ground-truth renders are
encoded, noised at random t (seeds 0 and 1), and the mean |eps - eps_cfg| of the unguided model and
of each enhanced embedding against CFG w = 5 is recorded (dicecli.method.guidance_error).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from dicecli.enhancer import read_enhancer
from dicecli.families import load_adapter
from dicecli.method import guidance_error
from dicecli.plugins.toy.world import evaluation_set, scene_from_stated
from dicecli.refs import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("enhancers", nargs="+", help="NAME=FILE")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    toy = load_adapter(resolve_model("toy"), torch.device("cpu"), torch.float32)
    prompts, stated = evaluation_set("held_out_pairs", args.prompts)
    rng = np.random.default_rng(0)
    pixels = np.stack([np.asarray(scene_from_stated(s, rng).render(rng)) for s in stated])
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
        latents = toy.vae.encode(x).latent_dist.mean * toy.vae.config.scaling_factor
    cond, null = toy.encode(prompts).conditioning, toy.encode([""]).conditioning
    result = {"prompts": args.prompts, "guidance_scale": 5.0, "seeds": [0, 1], "enhancers": {}}
    for spec in args.enhancers:
        name, _, path = spec.partition("=")
        enhancer, meta = read_enhancer(path)
        errors = [guidance_error(toy, enhancer, latents, cond, null, 5.0, seed=seed) for seed in (0, 1)]
        result["unguided"] = float(np.mean([before for before, _ in errors]))
        result["enhancers"][name] = {"error": float(np.mean([after for _, after in errors])),
                                     "settings": {k: meta.get(k) for k in ("steps", "batch_size", "lr", "ema")}}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
