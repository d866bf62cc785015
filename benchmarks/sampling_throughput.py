"""Sampling throughput on the real SD1.5 architecture (random weights), 512x512, 20 steps, batch 16, bf16.

    python benchmarks/sampling_throughput.py OUT_DIR

Compares, in one process on one GPU: diffusers' StableDiffusionPipeline at CFG w=5 and w=1
(from prompts), `dice sample`'s path (dicecli.sampling.run_job) for DICE at cfg 1, eager and
compiled, and the enhancer's own cost. Prints one JSON line per measurement.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from dicecli.enhancer import Enhancer
from dicecli.families import load_adapter
from dicecli.refs import resolve_model
from dicecli.sampling import SampleJob, SampleSettings, run_job

from sd15_random import build

BATCH, STEPS, SIZE, REPEATS = 16, 20, 512, 3


def timed(fn, repeats=REPEATS) -> float:
    fn()  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def emit(**row) -> None:
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, **row}), flush=True)


def main(out: Path) -> None:
    from diffusers import DPMSolverMultistepScheduler

    model = build(Path("/tmp/sd15-random"))
    adapter = load_adapter(resolve_model(str(model)), torch.device("cuda"), torch.bfloat16)
    adapter.require(*adapter.pipeline_components)
    prompts = [f"a photograph of object {i} on a table near a window" for i in range(BATCH)]

    pipe = adapter.pipeline(DPMSolverMultistepScheduler.from_config(adapter.scheduler.config, algorithm_type="dpmsolver++"))
    for w in (5.0, 1.0) if os.environ.get("FUSED") != "1" else (5.0,):
        seconds = timed(lambda: pipe(prompts, guidance_scale=w, num_inference_steps=STEPS, height=SIZE, width=SIZE,
                                     generator=torch.Generator("cuda").manual_seed(0), output_type="pil"))
        emit(what=f"diffusers StableDiffusionPipeline, CFG w={w:g}", images_per_s=BATCH / seconds)

    cond = adapter.encode(prompts).conditioning.to("cuda")
    null = adapter.encode([""]).conditioning.to("cuda")
    enhancer = Enhancer(768).to("cuda").eval()
    with torch.no_grad():
        enhanced = cond.with_embeds(enhancer(cond.prompt_embeds, null.prompt_embeds))
    enhancer_s = timed(lambda: enhancer(cond.prompt_embeds, null.prompt_embeds), repeats=20)
    settings = SampleSettings(model="sd15-random", family="sd15", enhancer="bench", enhancer_sha256=None, alpha=1.0,
                              cfg=1.0, negative_prompt="", steps=STEPS, scheduler="dpmsolver++", seed=0, height=SIZE,
                              width=SIZE, num_per_prompt=1)
    job = SampleJob(adapter, prompts * 4, Conditioning_cat(enhanced, 4), null, settings)
    labels = ("eager", "compiled") if os.environ.get("FUSED") != "1" else ("compiled+fused-qkv+channels-last",)
    for label in labels:
        if label.startswith("compiled"):
            if "fused" in label:
                adapter.unet.fuse_qkv_projections()
                adapter.unet.to(memory_format=torch.channels_last)
                adapter.vae.fuse_qkv_projections()
            adapter.compile_denoiser(vae_decoder=True)
            run_job(job, out / f"warmup-{label}", BATCH)  # compile outside the timing
        start = time.perf_counter()
        run_job(job, out / f"dice-{label}", BATCH)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        emit(what=f"dice sample (DICE, cfg 1, {label}, PNGs written)", images_per_s=len(job.prompts) / seconds,
             enhancer_ms_per_batch=enhancer_s * 1000, sampling_call_ms=seconds / 4 * 1000,
             enhancer_overhead_percent=100 * enhancer_s / (seconds / 4))
    # The same compiled models inside diffusers' own pipeline, CFG w=5, for the ratio at equal footing.
    pipe = adapter.pipeline(DPMSolverMultistepScheduler.from_config(adapter.scheduler.config, algorithm_type="dpmsolver++"))
    if os.environ.get("FUSED") == "1":
        return
    seconds = timed(lambda: pipe(prompts, guidance_scale=5.0, num_inference_steps=STEPS, height=SIZE, width=SIZE,
                                 generator=torch.Generator("cuda").manual_seed(0), output_type="pil"))
    emit(what="diffusers StableDiffusionPipeline, CFG w=5, compiled UNet + VAE decoder", images_per_s=BATCH / seconds)


def Conditioning_cat(cond, times):
    from dicecli.families import Conditioning

    return Conditioning.cat([cond] * times)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
