"""The per-prompt oracle of docs/toyworld.md: how much of CFG's alignment an embedding can carry (GPU).

    python scripts/toy/oracle.py [--prompts 1024] [--steps 3000] [--max-seconds S] [--score-at 1000,2000]
                                 --out oracle.json

Instead of an enhancer, a free offset per prompt (every token but the first) is optimised with the
DICE objective (dicecli/method.py: l1 to CFG w = 5 with the null prompt, t ~ U{0..999}) on fresh
renders of the evaluation prompts themselves (32 per prompt): a ceiling for any enhancer, not a
method. It is then scored on the Table 1 protocol (DPM-Solver++, 20 steps, seed = prompt index),
with unguided and CFG w = 5 on the same prompts. --score-at also scores the offsets as they stood
at those steps, and the loss is logged every 100 steps: whether the ceiling has converged.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from diffusers import DDPMScheduler

from dicecli.families import load_adapter
from dicecli.method import cfg_target, student_loss
from dicecli.plugins.toy.world import alignment, evaluation_set, load_evaluator, read, scene_from_stated
from dicecli.refs import resolve_model
from dicecli.sampling import generate
from dicecli.settings import SampleConfig

RENDERS_PER_PROMPT = 32


def steps_list(text: str) -> set[int]:
    """--score-at: comma-separated positive step counts."""
    try:
        steps = {int(n) for n in text.split(",") if n.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of steps, e.g. 1000,2000") from None
    if any(n <= 0 for n in steps):
        raise argparse.ArgumentTypeError(f"{text!r}: steps must be positive")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--max-seconds", type=float, default=float("inf"), help="stop training early")
    parser.add_argument("--score-at", type=steps_list, default=set(), help="comma-separated steps at which the offsets are also scored")
    parser.add_argument("--out", default="oracle.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    adapter = load_adapter(resolve_model("toy"), device, torch.float32)
    adapter.require("unet", "vae", "text_encoder", "tokenizer")
    scheduler = DDPMScheduler.from_config(adapter.scheduler.config)
    evaluator = load_evaluator(device)
    prompts, stated = evaluation_set("held_out_pairs", args.prompts)
    cond = adapter.encode(prompts).conditioning.to(device)
    null = adapter.encode([""]).conditioning.to(device)

    rng = np.random.default_rng(1)
    images = np.stack([np.asarray(scene_from_stated(s, rng).render(rng)) for s in stated for _ in range(RENDERS_PER_PROMPT)])
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        latents = torch.cat([adapter.vae.encode(x[s : s + 1024].to(device)).latent_dist.mean
                             for s in range(0, len(x), 1024)]) * adapter.vae.config.scaling_factor
    owner = torch.arange(len(prompts), device=device).repeat_interleave(RENDERS_PER_PROMPT)
    offset = torch.zeros_like(cond.prompt_embeds, requires_grad=True)

    def enhanced(rows):  # the first (start) token is kept, as the enhancer keeps it
        c = cond[rows]
        e = c.prompt_embeds + offset[rows]
        return c.with_embeds(torch.cat([c.prompt_embeds[:, :1], e[:, 1:]], 1))

    optimizer = torch.optim.AdamW([offset], lr=args.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(0)
    score_at = args.score_at
    snapshots, log, window = {}, [], []
    start, step = time.time(), 0
    while step < args.steps and time.time() - start < args.max_seconds:
        pick = torch.randint(0, len(latents), (args.batch_size,), generator=generator, device=device)
        rows = owner[pick]
        t = torch.randint(0, 1000, (args.batch_size,), generator=generator, device=device)
        noise = torch.randn(latents[pick].shape, generator=generator, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            x_t = scheduler.add_noise(latents[pick], noise, t)
            target = cfg_target(adapter, x_t, t, cond[rows], null, 5.0)
            loss = student_loss(adapter, x_t, t, enhanced(rows), target, "l1")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        window.append(loss.detach())
        if step % 100 == 0:
            log.append({"step": step, "loss": torch.stack(window).mean().item(), "time": round(time.time() - start, 1)})
            window = []
        if step in score_at:
            snapshots[step] = offset.detach().clone()
    train_s = time.time() - start

    @torch.no_grad()
    def score(c, cfg: float) -> float:
        out = []
        for s in range(0, len(prompts), 256):
            out += generate(adapter, c[s : s + 256], null, SampleConfig(cfg=cfg, steps=20, height=64, width=64),
                            list(range(s, min(s + 256, len(prompts)))))
        readings = read(evaluator, np.stack([np.asarray(i) for i in out]), device)
        return float(np.mean([alignment(s, r) for s, r in zip(stated, readings)]))

    every = torch.arange(len(prompts), device=device)
    with torch.no_grad():
        oracle = enhanced(every)
        during = {}
        for at, snapshot in snapshots.items():  # the offsets as they stood at step `at`
            offset.data.copy_(snapshot)
            during[str(at)] = score(enhanced(every), 1.0)
    result = {"prompts": len(prompts), "steps": step, "batch_size": args.batch_size, "lr": args.lr,
              "train_s": round(train_s, 1), "final_loss": loss.item(), "scheduler": "dpmsolver++", "sampling_steps": 20,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "unguided": score(cond, 1.0), "cfg5": score(cond, 5.0), "oracle": score(oracle, 1.0),
              "oracle_at_step": during, "log": log}
    with open(args.out, "w") as f:
        f.write(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "log"}), flush=True)


if __name__ == "__main__":
    main()
