"""Distill throughput and memory on a real architecture (random weights), one GPU.

    python benchmarks/distill_throughput.py OUT_DIR [--arch sd15|sdxl|pixart] [--steps N] [--batch 32] [--compile]

Runs `dicecli.distill.Distiller` exactly as `dice distill` does, from a latent cache of random
latents at the model's native size with captions, and prints images/s (median over the last
two thirds of the steps) and peak GPU memory as one JSON line. A batch that does not fit
prints {"oom": true} instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dicecli.cache import LATENTS_FORMAT, CacheWriter, new_header
from dicecli.data import open_training_data
from dicecli.distill import Distiller
from dicecli.families import load_adapter
from dicecli.refs import resolve_model
from dicecli.settings import DistillConfig

from random_models import NATIVE_SIZE, build


def latent_cache(path: Path, count: int, family: str, size: int) -> Path:
    rng = np.random.default_rng(0)
    header = new_header(LATENTS_FORMAT, family=family, model="random", model_resolved="", fingerprint="",
                        dtype=np.float16, tokens=77, context_dim=0)
    with CacheWriter(path, header) as writer:
        writer.append_array("latents", rng.standard_normal((count, 4, size // 8, size // 8)).astype(np.float16))
        writer.append_strings("prompts", [f"a photograph of object {i} on a table near a window" for i in range(count)])
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", default="sd15", choices=sorted(NATIVE_SIZE))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    size = NATIVE_SIZE[args.arch]
    model = build(args.arch, Path(f"/tmp/{args.arch}-random"))
    data = open_training_data(str(latent_cache(args.out / f"latents-{args.arch}.h5", 256, args.arch, size)))
    adapter = load_adapter(resolve_model(str(model)), torch.device("cuda"), torch.bfloat16)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.channels_last:
        adapter.denoiser.to(memory_format=torch.channels_last)
    if args.compile_mode:
        adapter.components[adapter.denoiser_name] = torch.compile(adapter.denoiser, mode=args.compile_mode)
    config = DistillConfig(steps=args.steps, batch_size=args.batch * args.grad_accum, grad_accum=args.grad_accum,
                           negative_prompts="builtin", checkpoint_every=10**9, validate=False, compile=args.compile,
                           resolution=size, loss=adapter.defaults["distill"]["loss"])
    torch.cuda.reset_peak_memory_stats()
    trainer = Distiller(adapter, data, config, work_dir=args.out / "work", output=args.out / "e.safetensors",
                        model_name=f"{args.arch}-random")
    row = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": args.arch, "resolution": size,
           "batch_per_step": config.batch_size, "micro_batch": args.batch, "compile": args.compile_mode or args.compile,
           "channels_last": args.channels_last, "cudnn_benchmark": args.cudnn_benchmark}
    times = []
    trainer.enhancer.train()
    try:
        for _ in range(args.steps):
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step(trainer.enhancer)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        print(json.dumps({**row, "oom": True}))
        return
    warm = times[len(times) // 3:]
    row.update(first_step_s=times[0], steps=args.steps, images_per_s=config.batch_size / statistics.median(warm),
               max_memory_gb=torch.cuda.max_memory_allocated() / 2**30)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
