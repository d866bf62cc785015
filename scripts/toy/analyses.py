"""Runs behind docs/toyworld.md's "What the enhancer changes" (GPU; CPU works, slowly):

    python scripts/toy/analyses.py --out DIR [--prompts 1024] [--search-prompts 256] [--lengths 2,4,8]

With the shipped reference enhancer (`--enhancer toy`) on the held-out-pairs prompts, at Table 1's setting
(DPM-Solver++, 20 steps, one image per prompt, seed = prompt index), through dicecli's own functions:
- `dice inspect`'s semantic/padding cosines and relative changes;
- partial enhancement (semantic only, padding only, all) beside unguided and CFG w = 5: alignment, toy FID;
- the strength curve, alpha from 0 to 2;
- trigger words: `dice trigger`'s universal suffix, searched on training captions (never the evaluation prompts),
  appended to the held-out prompts and sampled unguided; next to as many random words of the same candidates,
  unguided, DICE and CFG. Scored against what the original prompt states.
Writes DIR/analyses.json, DIR/features.npz (the evaluator's float16 features of every row and of ground-truth
renders: `write_report.py --import-analyses DIR` computes the toy FIDs from them, as for the other runs),
DIR/parts.png (samples side by side) and DIR/attention.png (`dice attention`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dicecli.analysis.attention import attention_maps
from dicecli.analysis.embeddings import inspect_enhancer
from dicecli.analysis.triggers import TriggerSearch, candidate_words, find_triggers, with_suffix
from dicecli.enhancer import read_enhancer, resolve_enhancer
from dicecli.families import load_adapter
from dicecli.method import apply_enhancer
from dicecli.plugins.toy.world import ToyWorld, load_evaluator
from dicecli.refs import resolve_model
from dicecli.runtime import Runtime
from dicecli.sampling import generate, image_grid
from dicecli.settings import SampleConfig, SampleOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_report import BATCH, Protocol  # noqa: E402

SEARCH_SEED = 0  # training captions the trigger words are searched on: ToyWorld(seed=0), the training world
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--search-prompts", type=int, default=256)
    parser.add_argument("--lengths", default="2,4,8")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    args.out.mkdir(parents=True, exist_ok=True)

    adapter = load_adapter(resolve_model("toy"), device, dtype)
    evaluator = load_evaluator(device)
    pairs = Protocol("held_out_pairs", args.prompts, adapter, evaluator, device)
    enhancer, _ = read_enhancer(resolve_enhancer("toy"), device)
    null = adapter.encode([""]).conditioning.to(device)
    pipe = adapter.pipeline()
    rows, grid, feats = [], {}, {"truth": pairs.truth_features}
    from dicecli.plugins.toy.world import features

    def run(name: str, cond, cfg: float = 1.0, **extra) -> dict:
        start = time.perf_counter()
        images = []
        with torch.no_grad():
            for s in range(0, len(cond), BATCH):
                part = slice(s, min(s + BATCH, len(cond)))
                images += generate(adapter, cond[part].to(device, dtype), null,
                                   SampleConfig(cfg=cfg, steps=20, height=64, width=64),
                                   list(range(part.start, part.stop)), pipe)
        pixels = np.stack([np.asarray(i) for i in images])
        score, per_attribute = pairs.score(pixels)
        feats[name] = features(evaluator, pixels, device).astype(np.float16)
        row = {"name": name, "cfg": cfg, **extra, "alignment": score, "attributes": per_attribute,
               "seconds": time.perf_counter() - start}
        grid[name] = images[:6]
        rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    def dice(alpha: float = 1.0, part: str = "all"):
        with torch.no_grad():
            return apply_enhancer(enhancer, pairs.cond.to(dtype=torch.float32), null.to(dtype=torch.float32), alpha,
                                  part)

    with torch.no_grad():  # warm-up: kernels and allocator
        generate(adapter, pairs.cond[:BATCH], null, SampleConfig(cfg=5.0, steps=3, height=64, width=64),
                 list(range(min(BATCH, len(pairs.cond)))), pipe)

    # the embeddings, part by part (`dice inspect`)
    prompts_file = args.out / "held-out-pairs.txt"
    prompts_file.write_text("".join(p + "\n" for p in pairs.prompts))
    toy = SampleOptions(model="toy", enhancer="toy")
    inspected = inspect_enhancer(str(prompts_file), None, toy, Runtime(device, dtype))
    inspect_summary = [vars(s) for s in inspected.summary]

    # partial enhancement and strength
    run("unguided", pairs.cond)
    run("cfg5", pairs.cond, cfg=5.0)
    for part in ("semantic", "padding", "all"):
        run(f"dice-{part}", dice(part=part), part=part, alpha=1.0)
    for alpha in ALPHAS:
        if alpha not in (0.0, 1.0):  # alpha 0 is the unguided row, alpha 1 dice-all
            run(f"dice-alpha{alpha:g}", dice(alpha), alpha=alpha)

    # trigger words: searched on training captions, scored on the held-out prompts
    world = ToyWorld(size=100_000, seed=SEARCH_SEED)
    search_prompts = [world.caption(i) for i in world.distinct(args.search_prompts)]
    search_file = args.out / "search-prompts.txt"
    search_file.write_text("".join(p + "\n" for p in search_prompts))
    triggers = []
    _, words = candidate_words(adapter.tokenizer)
    for length in [int(x) for x in args.lengths.split(",")]:
        start = time.perf_counter()
        found = find_triggers(str(search_file), args.out / f"trigger-{length}", toy,
                              TriggerSearch(length, args.iterations, args.top_k), Runtime(device, dtype), progress=print)
        suffix = found.suffixes[0].split()
        with torch.no_grad():
            cond = adapter.encode([with_suffix(p, suffix) for p in pairs.prompts]).conditioning
        row = run(f"trigger-{length}", cond, suffix=" ".join(suffix))
        scored = {"length": length, "suffix": found.suffixes[0], "search_distance": found.distance,
                  "search_random_distance": found.random_distance, "search_seconds": time.perf_counter() - start,
                  "alignment": row["alignment"]}
        held_out = find_distance_on(adapter, enhancer, pairs.prompts, null, suffix, device)
        scored["held_out_distance"] = held_out
        randoms = random.Random(length).sample(words, length)
        with torch.no_grad():
            cond = adapter.encode([with_suffix(p, randoms) for p in pairs.prompts]).conditioning
        random_row = run(f"random-{length}", cond, suffix=" ".join(randoms))
        scored.update(random_suffix=" ".join(randoms), random_alignment=random_row["alignment"])
        triggers.append(scored)
        print(json.dumps(scored), flush=True)

    columns = ["unguided", "dice-semantic", "dice-padding", "dice-all", "cfg5"] + [f"trigger-{triggers[-1]['length']}"]
    picture = image_grid([[grid[c][i] for c in columns] for i in range(6)], columns)
    picture.resize((picture.width * 2, picture.height * 2), resample=0).save(args.out / "parts.png")
    attention = attention_maps(pairs.prompts[0], args.out / "attention.png",
                               replace(toy, steps=20, height=64, width=64), Runtime(device, dtype), at_steps=[1, 5, 10, 20])
    setup = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
             "torch": torch.__version__, "dtype": str(dtype), "prompts": len(pairs.prompts),
             "search_prompts": len(search_prompts), "search_seed": SEARCH_SEED, "iterations": args.iterations,
             "top_k": args.top_k, "candidate_words": len(words), "truth_alignment": pairs.truth_alignment,
             "grid_columns": columns, "grid_prompts": pairs.prompts[:6],
             "attention": {"prompt": attention.prompt, "words": attention.words, "steps": attention.steps,
                           "grid": attention.grid, "layers": attention.layers}}
    np.savez_compressed(args.out / "features.npz", **feats)
    (args.out / "analyses.json").write_text(json.dumps({**setup, "inspect": inspect_summary, "rows": rows,
                                                        "triggers": triggers}, indent=1))


def find_distance_on(adapter, enhancer, prompts: list[str], null, suffix: list[str], device) -> float:
    """The trigger words' relative distance on the held-out prompts (searched on others)."""
    with torch.no_grad():
        cond = adapter.encode(prompts).conditioning.to(device, torch.float32)
        target = apply_enhancer(enhancer, cond, null.to(dtype=torch.float32)).prompt_embeds
        suffixed = adapter.encode([with_suffix(p, suffix) for p in prompts]).conditioning.prompt_embeds.float()
        ratio = ((suffixed - target) ** 2).sum((1, 2)) / ((cond.prompt_embeds - target) ** 2).sum((1, 2))
    return float(ratio.mean())


if __name__ == "__main__":
    main()
