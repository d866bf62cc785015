"""Distill throughput and memory on a real architecture (random weights), one GPU.

    python benchmarks/distill_throughput.py OUT_DIR [--arch sd15|sdxl|pixart] [--steps N] [--batch 32] [--compile]
                                                    [--text cached|per-step]

Runs `dice distill`'s own entry point (`dicecli.distill.distill`) on a latent cache of random latents at the
model's native size, with captions, and prints images/s (median step time over the last two thirds of the
steps, from the run's train log) and peak GPU memory as one JSON line. `--text cached` (the default) gives the
cache the captions' embeddings, as `dice encode --images` writes it, so distill never runs the text encoder;
`--text per-step` leaves them out, so every step encodes its captions (how distill ran before 0.x: the old
figures). A batch that does not fit prints {"oom": true} instead. On a machine without a GPU it runs in fp32 on
the CPU, as the test suite's smoke run (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from dicecli.cache import LATENTS_FORMAT, CacheWriter, new_header, storage_dtype
from dicecli.data import open_training_data
from dicecli.distill import distill
from dicecli.families import adapter_class, load_adapter
from dicecli.refs import resolve_model
from dicecli.runtime import Runtime
from dicecli.settings import DistillConfig

from random_models import DEVICE, DTYPE, NATIVE_SIZE, build, device_name, peak_memory_gb

CAPTIONS = 256


def latent_cache(path: Path, adapter, size: int, with_text: bool) -> Path:
    """Random latents of the model's native size with captions (and, `with_text`, the captions' embeddings)."""
    rng = np.random.default_rng(0)
    header = new_header(LATENTS_FORMAT, family=adapter.family, model="random", model_resolved="",
                        fingerprint=adapter.text_encoder_fingerprint(), dtype=storage_dtype(DTYPE),
                        tokens=adapter.text.tokens, context_dim=adapter.text.width)
    factor = 2 ** (len(adapter.vae.config.block_out_channels) - 1)
    captions = [f"a photograph of object {i} on a table near a window" for i in range(CAPTIONS)]
    path.unlink(missing_ok=True)
    with CacheWriter(path, header, random_access=True) as writer:  # as `dice encode --images` writes it
        shape = (CAPTIONS, adapter.latent_channels, size // factor, size // factor)
        writer.append_array("latents", rng.standard_normal(shape).astype(np.float16))
        if with_text:
            for start in range(0, CAPTIONS, 32):
                batch = captions[start : start + 32]
                writer.append(batch, adapter.encode(batch).conditioning)
        else:
            writer.append_strings("prompts", captions)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", default="sd15", choices=sorted(NATIVE_SIZE))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--text", choices=("cached", "per-step"), default="cached")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    size = NATIVE_SIZE[args.arch]
    ref = resolve_model(str(build(args.arch, Path(f"/tmp/{args.arch}-random"))))
    adapter = load_adapter(ref, DEVICE, DTYPE)
    data = open_training_data(str(latent_cache(args.out / f"latents-{args.arch}.h5", adapter, size,
                                               args.text == "cached")))
    del adapter
    config = DistillConfig(steps=args.steps, batch_size=args.batch * args.grad_accum, grad_accum=args.grad_accum,
                           negative_prompts="builtin", checkpoint_every=10**9, validate=False, compile=args.compile,
                           resolution=size, loss=adapter_class(ref.family).defaults["distill"]["loss"])
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row = {"device": device_name(), "torch": torch.__version__, "arch": args.arch, "resolution": size,
           "batch_per_step": config.batch_size, "micro_batch": args.batch, "compile": args.compile, "text": args.text}
    work = args.out / f"work-{args.arch}"
    for stale in (work / "checkpoints").glob("step-*"):
        import shutil

        shutil.rmtree(stale)
    try:
        result = distill(ref, data, config, work, args.out / "e.safetensors", Runtime(DEVICE, DTYPE))
    except torch.OutOfMemoryError:
        print(json.dumps({**row, "oom": True}))
        return
    # Each step logs when it finished (its loss is read, so the GPU work is done): durations are the differences.
    finished = [record["time"] for record in result.log]
    durations = np.diff(finished).tolist()
    warm = durations[len(durations) // 3:] or durations
    row.update(steps=args.steps, step_ms=1000 * statistics.median(warm), images_per_s=config.batch_size / statistics.median(warm),
               max_memory_gb=peak_memory_gb())
    print(json.dumps(row))


if __name__ == "__main__":
    main()
