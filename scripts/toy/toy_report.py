"""Runs behind docs/toyworld.md: every sampling setting of the toy report on held-out prompts (GPU).

    python scripts/toy/toy_report.py ENHANCER NEGATIVE_ENHANCER --out DIR [--prompts 1024]

ENHANCER is distilled with the null prompt, NEGATIVE_ENHANCER with the toy negative corpus
(scripts/toy/run_gpu_report.sh makes both with `dice distill`). For each setting (method,
guidance scale, alpha, steps, negative prompt) it samples one image per held-out prompt
(seed = prompt index, DPM-Solver++), times it, and records the toy evaluator's alignment
(overall and per attribute) and its FID features. Writes DIR/toy-report.json,
DIR/toy-features.npz and DIR/toy-features-nfe.npz (float16 features per setting, and of
ground-truth renders) and
DIR/toy-grid.png. scripts/toy/write_report.py turns them into the Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from dicecli.enhancer import load_enhancer
from dicecli.method import apply_enhancer
from dicecli.families import Conditioning, load_adapter
from dicecli.refs import resolve_model
from dicecli.sampling import generate, image_grid
from dicecli.plugins.toy.world import (ToyWorld, alignment, attribute_hits, features, load_evaluator, read,
                              scene_from_stated)

EVAL_SEED = 7  # held-out prompts: ToyWorld(seed=7, held_out=True)
NEGATIVE_SEED = 11  # per-prompt negative prompts: captions of ToyWorld(seed=11)
TRUTH_SEED = 0  # ground-truth renders for FID
BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("enhancer")
    parser.add_argument("negative_enhancer")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--table-only", action="store_true", help="only the Table 1 settings (for timing on a CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    args.out.mkdir(parents=True, exist_ok=True)

    adapter = load_adapter(resolve_model("toy"), device, dtype)
    evaluator = load_evaluator(device)
    held = ToyWorld(size=args.prompts, seed=EVAL_SEED, held_out=True)
    prompts = list(held[: args.prompts])
    stated = [held.scene(i).stated for i in range(args.prompts)]
    negatives = list(ToyWorld(size=args.prompts, seed=NEGATIVE_SEED)[: args.prompts])
    cond = adapter.encode(prompts).conditioning.to(device)
    null = adapter.encode([""]).conditioning.to(device)
    neg = adapter.encode(negatives).conditioning.to(device)
    plain, _ = load_enhancer(args.enhancer, device)
    negative_aware, _ = load_enhancer(args.negative_enhancer, device)
    pipe = adapter.pipeline()

    rng = np.random.default_rng(TRUTH_SEED)
    truth = np.stack([np.asarray(scene_from_stated(s, rng).render(rng)) for s in stated])
    feats = {"truth": features(evaluator, truth, device).astype(np.float16)}
    truth_alignment = float(np.mean([alignment(s, r) for s, r in zip(stated, read(evaluator, truth, device))]))

    def enhanced(enhancer, negative: Conditioning, alpha: float) -> Conditioning:
        return apply_enhancer(enhancer, cond.to(dtype=torch.float32), negative.to(dtype=torch.float32), alpha).to(dtype=dtype)

    rows, grid_images = [], {}

    def setup() -> dict:
        return {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
                "torch": torch.__version__, "dtype": str(dtype), "prompts": args.prompts, "eval_seed": EVAL_SEED,
                "negative_seed": NEGATIVE_SEED, "truth_seed": TRUTH_SEED, "batch": BATCH,
                "scheduler": "dpmsolver++", "grid_prompts": prompts[:8], "grid_negatives": negatives[:8],
                "truth_alignment": truth_alignment}

    def run(name: str, method: str, c: Conditioning, negative: Conditioning, cfg: float, steps: int,
            alpha: float | None = None, negative_prompt: bool = False) -> None:
        # the enhancer runs once per prompt before sampling; its cost is part of the timed call
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
        images = []
        for s in range(0, args.prompts, BATCH):
            part = slice(s, min(s + BATCH, args.prompts))
            images += generate(adapter, c[part], negative[part] if len(negative) > 1 else negative, cfg=cfg,
                               steps=steps, scheduler="dpmsolver++", seeds=list(range(part.start, part.stop)),
                               height=64, width=64, pipe=pipe)
        torch.cuda.synchronize() if device.type == "cuda" else None
        seconds = time.perf_counter() - start
        pixels = np.stack([np.asarray(i) for i in images])
        readings = read(evaluator, pixels, device)
        per_attribute: dict[str, list[int]] = {}
        for s, r in zip(stated, readings):
            for k, (found, total) in attribute_hits(s, r).items():
                per_attribute.setdefault(k, [0, 0])
                per_attribute[k][0] += found
                per_attribute[k][1] += total
        feats[name] = features(evaluator, pixels, device).astype(np.float16)
        grid_images[name] = images[:8]
        row = {"name": name, "method": method, "cfg": cfg, "alpha": alpha, "steps": steps,
               "nfe": steps * (2 if cfg > 1 else 1), "negative_prompt": negative_prompt,
               "alignment": float(np.mean([alignment(s, r) for s, r in zip(stated, readings)])),
               "attributes": {k: a / b for k, (a, b) in per_attribute.items() if b},
               "seconds": seconds, "images_per_second": args.prompts / seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def dice(alpha: float = 1.0, negative: Conditioning = null, enhancer=plain):
        return enhanced(enhancer, negative, alpha)

    warm = min(BATCH, args.prompts)
    for cfg in (1.0, 5.0):  # warm-up: kernels, autotuning and allocator for both batch shapes
        generate(adapter, cond[:warm], null, cfg=cfg, steps=5, scheduler="dpmsolver++", seeds=list(range(warm)),
                 height=64, width=64, pipe=pipe)
    # Table 1
    run("unguided", "unguided", cond, null, 1.0, 20)
    run("cfg5", "CFG", cond, null, 5.0, 20)
    run("cfg5-20nfe", "CFG", cond, null, 5.0, 10)
    with torch.no_grad():
        run("dice", "DICE", dice(), null, 1.0, 20, alpha=1.0)
        run("cfg5-negative", "CFG", cond, neg, 5.0, 20, negative_prompt=True)
        run("dice-negative", "DICE", dice(negative=neg, enhancer=negative_aware), neg, 1.0, 20, alpha=1.0,
            negative_prompt=True)
        if args.table_only:
            np.savez_compressed(args.out / "toy-features.npz", **feats)
            (args.out / "toy-report.json").write_text(json.dumps({**setup(), "rows": rows}, indent=1))
            return
        # alignment against NFE (paper Figure 5)
        for steps in (4, 6, 8, 12, 16, 24, 30):
            run(f"unguided-{steps}", "unguided", cond, null, 1.0, steps)
            run(f"cfg5-{steps}", "CFG", cond, null, 5.0, steps)
            run(f"dice-{steps}", "DICE", dice(), null, 1.0, steps, alpha=1.0)
        # strength (paper Figure 8)
        for alpha in (0.25, 0.5, 0.75, 1.25, 1.5, 2.0):
            run(f"dice-alpha{alpha:g}", "DICE", dice(alpha), null, 1.0, 20, alpha=alpha)
        run("dice+cfg2", "DICE+CFG", dice(), null, 2.0, 20, alpha=1.0)

    columns = ["unguided", "cfg5", "dice", "dice-alpha1.5", "dice-negative"]
    truth_images = [scene_from_stated(s, np.random.default_rng(i)).render(np.random.default_rng(i)) for i, s in
                    enumerate(stated[:8])]
    grid = image_grid([[truth_images[i]] + [grid_images[c][i] for c in columns] for i in range(8)],
                      ["truth", "unguided", "CFG 5", "DICE", "DICE a1.5", "DICE neg"])
    grid.resize((grid.width * 2, grid.height * 2), resample=0).save(args.out / "toy-grid.png")
    # two files: one returned file from the GPU machine may hold at most 16 MiB
    sweep = {k: v for k, v in feats.items() if k.rsplit("-", 1)[-1].isdigit()}
    np.savez_compressed(args.out / "toy-features-nfe.npz", **sweep)
    np.savez_compressed(args.out / "toy-features.npz", **{k: v for k, v in feats.items() if k not in sweep})
    (args.out / "toy-report.json").write_text(json.dumps({**setup(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
