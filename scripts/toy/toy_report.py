"""Runs behind docs/toyworld.md: every sampling setting of the toy report (GPU).

    python scripts/toy/toy_report.py --enhancer F --negative-enhancer F [--gd DIR] [--pnp DIR] [--ablation NAME=F ...]
                                     --out DIR [--prompts 1024] [--phrasing-prompts 512] [--table-only]

ENHANCER is distilled with the null prompt, NEGATIVE_ENHANCER with the toy negative corpus
(scripts/toy/run_gpu.sh makes both with `dice distill`); --gd is a guidance-distilled UNet
(scripts/toy/guidance_distill.py), --pnp a Plug-and-Play guide (scripts/toy/plug_and_play.py); each --ablation enhancer is scored at the Table 1 setting.
Prompts are the distinct prompts of the evaluation sets in dicecli/plugins/toy/world.py
(held-out colour–shape pairs; held-out phrasings). For each setting (method, scheduler, guidance
scale, alpha, steps, negative prompt) it samples one image per prompt (seed = prompt index), times
it, and records the toy evaluator's alignment (overall and per attribute) and its FID features.
Writes DIR/toy-report.json, DIR/toy-features-K.npz (float16 features of each setting and of
ground-truth renders, in files under 16 MiB) and DIR/toy-grid.png; scripts/toy/write_report.py
turns them into the Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dicecli.enhancer import read_enhancer
from dicecli.families import Conditioning, load_adapter
from dicecli.method import apply_enhancer
from dicecli.plugins.toy.world import (ToyWorld, alignment, attribute_hits, clutter, evaluation_set, features,
                                       load_evaluator, read, scene_from_stated)
from dicecli.refs import resolve_model
from dicecli.sampling import generate, image_grid
from dicecli.settings import SampleConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guidance_distill import gd_pipeline  # noqa: E402
from plug_and_play import PnPSampler  # noqa: E402

NEGATIVE_SEED = 11  # per-prompt negative prompts: captions of ToyWorld(seed=11)
TRUTH_SEED = 0  # ground-truth renders for FID
BATCH = 256
GD_SCALE = 5.0
FEATURES_PER_FILE = 24  # settings per features file: 24 x 1024 x 256 float16 stays under 16 MiB


class Protocol:
    """One evaluation set: prompts, their conditioning, the evaluator, and the rows scored on it."""

    def __init__(self, name: str, count: int, adapter, evaluator, device):
        self.name, self.adapter, self.evaluator, self.device = name, adapter, evaluator, device
        self.prompts, self.stated = evaluation_set(name, count)
        self.cond = adapter.encode(self.prompts).conditioning.to(device)
        rng = np.random.default_rng(TRUTH_SEED)
        truth = np.stack([np.asarray(scene_from_stated(s, rng).render(rng)) for s in self.stated])
        self.truth_features = features(evaluator, truth, device).astype(np.float16)
        self.truth_alignment = self.score(truth)[0]
        rng = np.random.default_rng(TRUTH_SEED + 1)
        self.clutter_alignment = self.score(np.stack([np.asarray(clutter(rng).render(rng)) for _ in self.stated]))[0]

    def score(self, pixels: np.ndarray) -> tuple[float, dict]:
        readings = read(self.evaluator, pixels, self.device)
        totals: dict[str, list[int]] = {}
        for s, r in zip(self.stated, readings):
            for k, (found, total) in attribute_hits(s, r).items():
                totals.setdefault(k, [0, 0])
                totals[k][0] += found
                totals[k][1] += total
        per_prompt = float(np.mean([alignment(s, r) for s, r in zip(self.stated, readings)]))
        return per_prompt, {k: a / b for k, (a, b) in totals.items() if b}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--enhancer", required=True)
    parser.add_argument("--negative-enhancer", required=True)
    parser.add_argument("--gd", type=Path, default=None, help="guidance-distilled UNet folder (guidance_distill.py)")
    parser.add_argument("--pnp", type=Path, default=None, help="Plug-and-Play guide folder (plug_and_play.py)")
    parser.add_argument("--pnp-only", action="store_true",
                        help="only unguided and PnP at the Table 1 setting (the PnP row, added to a recorded report)")
    parser.add_argument("--ablation", action="append", default=[], help="NAME=ENHANCER, scored at the Table 1 setting")
    parser.add_argument("--negative-ablation", action="append", default=[],
                        help="NAME=ENHANCER, scored at the DICE + negative prompt setting")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--phrasing-prompts", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--table-only", action="store_true", help="only Table 1 with DPM-Solver++ (for a CPU)")
    parser.add_argument("--ablations-only", action="store_true",
                        help="only the ablations, beside unguided and CFG with and without the negative prompts")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    args.out.mkdir(parents=True, exist_ok=True)

    adapter = load_adapter(resolve_model("toy"), device, dtype)
    evaluator = load_evaluator(device)
    pairs = Protocol("held_out_pairs", args.prompts, adapter, evaluator, device)
    phrasings = Protocol("held_out_phrasings", args.phrasing_prompts, adapter, evaluator, device)
    negatives = list(ToyWorld(size=args.prompts, seed=NEGATIVE_SEED)[: args.prompts])
    null = adapter.encode([""]).conditioning.to(device)
    neg = adapter.encode(negatives).conditioning.to(device)
    plain, _ = read_enhancer(args.enhancer, device)
    negative_aware, _ = read_enhancer(args.negative_enhancer, device)
    pipe = adapter.pipeline()
    gd_pipe = gd_pipeline(adapter, args.gd, GD_SCALE) if args.gd else None
    pnp_pipe = PnPSampler(adapter, args.pnp, GD_SCALE) if args.pnp else None  # the same w as GD

    feats = {f"truth:{p.name}": p.truth_features for p in (pairs, phrasings)}
    rows, grid_images = [], {}

    def run(name: str, method: str, protocol: Protocol, c: Conditioning, negative: Conditioning, cfg: float,
            steps: int, scheduler: str = "dpmsolver++", alpha: float | None = None, negative_prompt: bool = False,
            sampler=None) -> None:
        # the enhancer ran once per prompt before sampling; sampling is what is timed
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
        images = []
        for s in range(0, len(c), BATCH):
            part = slice(s, min(s + BATCH, len(c)))
            images += generate(adapter, c[part], negative[part] if len(negative) > 1 else negative,
                               SampleConfig(cfg=cfg, steps=steps, scheduler=scheduler, height=64, width=64),
                               list(range(part.start, part.stop)), sampler or pipe)
        torch.cuda.synchronize() if device.type == "cuda" else None
        seconds = time.perf_counter() - start
        pixels = np.stack([np.asarray(i) for i in images])
        score, per_attribute = protocol.score(pixels)
        key = f"{name}:{protocol.name}:{scheduler}"
        feats[key] = features(evaluator, pixels, device).astype(np.float16)
        grid_images[key] = images[:8]
        row = {"name": name, "method": method, "prompt_set": protocol.name, "scheduler": scheduler, "cfg": cfg,
               "alpha": alpha, "steps": steps, "nfe": steps * (2 if cfg > 1 else 1), "negative_prompt": negative_prompt,
               "alignment": score, "attributes": per_attribute, "seconds": seconds,
               "images_per_second": len(c) / seconds, "features": key}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def dice(protocol: Protocol, alpha: float = 1.0, negative: Conditioning = null, enhancer=plain) -> Conditioning:
        cond = protocol.cond.to(dtype=torch.float32)
        return apply_enhancer(enhancer, cond, negative.to(dtype=torch.float32), alpha).to(dtype=dtype)

    warm = min(BATCH, args.prompts)
    for cfg in (1.0, 5.0):  # warm-up: kernels, autotuning and allocator for both batch shapes
        generate(adapter, pairs.cond[:warm], null, SampleConfig(cfg=cfg, steps=5, height=64, width=64),
                 list(range(warm)), pipe)

    def table(protocol: Protocol, scheduler: str, negative_rows: bool = True) -> None:
        """Table 1: unguided, CFG at 40 and 20 NFE, DICE, GD, and with a negative prompt."""
        run("unguided", "unguided", protocol, protocol.cond, null, 1.0, 20, scheduler)
        run("cfg5", "CFG", protocol, protocol.cond, null, 5.0, 20, scheduler)
        run("cfg5-20nfe", "CFG", protocol, protocol.cond, null, 5.0, 10, scheduler)
        run("dice", "DICE", protocol, dice(protocol), null, 1.0, 20, scheduler, alpha=1.0)
        if gd_pipe is not None:
            run("gd", "GD", protocol, protocol.cond, null, 1.0, 20, scheduler, sampler=gd_pipe)
        if pnp_pipe is not None:
            run("pnp", "PnP", protocol, protocol.cond, null, 1.0, 20, scheduler, sampler=pnp_pipe)
        if negative_rows:
            run("cfg5-negative", "CFG", protocol, protocol.cond, neg, 5.0, 20, scheduler, negative_prompt=True)
            run("dice-negative", "DICE", protocol, dice(protocol, negative=neg, enhancer=negative_aware), neg, 1.0, 20,
                scheduler, alpha=1.0, negative_prompt=True)

    with torch.no_grad():
        if args.pnp_only:
            run("unguided", "unguided", pairs, pairs.cond, null, 1.0, 20)
            run("pnp", "PnP", pairs, pairs.cond, null, 1.0, 20, sampler=pnp_pipe)
        elif args.ablations_only:
            run("unguided", "unguided", pairs, pairs.cond, null, 1.0, 20)
            run("cfg5", "CFG", pairs, pairs.cond, null, 5.0, 20)
            run("cfg5-negative", "CFG", pairs, pairs.cond, neg, 5.0, 20, negative_prompt=True)
        else:
            table(pairs, "dpmsolver++")
        if not (args.table_only or args.pnp_only):  # distillation settings, each at the Table 1 setting (with or without negatives)
            for spec in args.ablation:
                label, _, path = spec.partition("=")
                enhancer, _ = read_enhancer(path, device)
                run(f"ablation:{label}", "DICE", pairs, dice(pairs, enhancer=enhancer), null, 1.0, 20, alpha=1.0)
            for spec in args.negative_ablation:
                label, _, path = spec.partition("=")
                enhancer, _ = read_enhancer(path, device)
                run(f"negative-ablation:{label}", "DICE", pairs, dice(pairs, negative=neg, enhancer=enhancer), neg,
                    1.0, 20, alpha=1.0, negative_prompt=True)
        if not (args.table_only or args.ablations_only or args.pnp_only):
            table(pairs, "pndm")
            table(phrasings, "dpmsolver++", negative_rows=False)
            for steps in (4, 6, 8, 12, 16, 24, 30):  # alignment against NFE (paper Figure 5)
                run(f"unguided-{steps}", "unguided", pairs, pairs.cond, null, 1.0, steps)
                run(f"cfg5-{steps}", "CFG", pairs, pairs.cond, null, 5.0, steps)
                run(f"dice-{steps}", "DICE", pairs, dice(pairs), null, 1.0, steps, alpha=1.0)
            for alpha in (0.25, 0.5, 0.75, 1.25, 1.5, 2.0):  # strength (paper Figure 8)
                run(f"dice-alpha{alpha:g}", "DICE", pairs, dice(pairs, alpha), null, 1.0, 20, alpha=alpha)
            run("dice+cfg2", "DICE+CFG", pairs, dice(pairs), null, 2.0, 20, alpha=1.0)

    setup = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
             "torch": torch.__version__, "dtype": str(dtype), "negative_seed": NEGATIVE_SEED, "truth_seed": TRUTH_SEED,
             "batch": BATCH, "gd_scale": GD_SCALE,
             "prompt_sets": {p.name: {"prompts": len(p.prompts), "truth_alignment": p.truth_alignment,
                                      "clutter_alignment": p.clutter_alignment, "examples": p.prompts[:8]}
                             for p in (pairs, phrasings)},
             "grid_negatives": negatives[:8]}
    columns = [c for c in ("unguided", "cfg5", "dice", "gd", "pnp", "dice-negative") if f"{c}:held_out_pairs:dpmsolver++" in grid_images]
    truth_images = [scene_from_stated(s, np.random.default_rng(i)).render(np.random.default_rng(i)) for i, s in
                    enumerate(pairs.stated[:8])]
    grid = image_grid([[truth_images[i]] + [grid_images[f"{c}:held_out_pairs:dpmsolver++"][i] for c in columns]
                       for i in range(8)], ["truth"] + columns)
    grid.resize((grid.width * 2, grid.height * 2), resample=0).save(args.out / "toy-grid.png")
    names = list(feats)
    for k in range(0, len(names), FEATURES_PER_FILE):
        np.savez_compressed(args.out / f"toy-features-{k // FEATURES_PER_FILE}.npz",
                            **{n.replace(":", "|"): feats[n] for n in names[k : k + FEATURES_PER_FILE]})
    (args.out / "toy-report.json").write_text(json.dumps({**setup, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
