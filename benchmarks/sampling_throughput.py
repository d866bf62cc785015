"""Sampling throughput on a real architecture (random weights), native size, 20 steps, bf16.

    python benchmarks/sampling_throughput.py OUT_DIR [--arch sd15|sdxl|pixart] [--batch 16] [--repeats 3]

Compares, in one process on one GPU: diffusers' own pipeline (StableDiffusionPipeline or
StableDiffusionXLPipeline) at CFG w=5 (and w=1) from prompts, `dice sample`'s path
(dicecli.sampling.run_job) for DICE at cfg 1, eager and compiled, the same compiled models
inside the diffusers pipeline at CFG w=5, and the enhancer's own cost. One JSON line each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dicecli.enhancer import Enhancer
from dicecli.families import load_adapter
from dicecli.method import apply_enhancer
from dicecli.refs import resolve_model
from dicecli.samplefolder import SampleSettings
from dicecli.sampling import SampleJob, make_scheduler, run_job

from random_models import DEVICE, DTYPE, NATIVE_SIZE, build, device_name, peak_memory_gb, synchronize

STEPS = 20


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", default="sd15", choices=sorted(NATIVE_SIZE))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4, help="pipeline calls per `dice sample` run")
    parser.add_argument("--no-unguided", action="store_true", help="skip the diffusers w=1 row")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled rows (CPU smoke runs)")
    args = parser.parse_args()
    size, batch = NATIVE_SIZE[args.arch], args.batch
    adapter = load_adapter(resolve_model(str(build(args.arch, Path(f"/tmp/{args.arch}-random")))), DEVICE, DTYPE)
    adapter.require(*adapter.pipeline_components)
    prompts = [f"a photograph of object {i} on a table near a window" for i in range(batch)]

    def emit(**row) -> None:
        print(json.dumps({"device": device_name(), "torch": torch.__version__, "arch": args.arch,
                          "size": size, "batch": batch, "steps": STEPS, **row}), flush=True)

    def diffusers_call(w: float):
        pipe = adapter.pipeline(make_scheduler("dpmsolver++", adapter.scheduler.config))
        extra = {"clean_caption": False} if adapter.family == "pixart" else {}  # as `dice encode` does
        return lambda: pipe(prompts, guidance_scale=w, num_inference_steps=STEPS, height=size, width=size,
                            generator=torch.Generator(DEVICE).manual_seed(0), output_type="pil", **extra)

    name = adapter.pipeline_class.__name__
    for w in (5.0,) if args.no_unguided else (5.0, 1.0):
        emit(what=f"diffusers {name}, CFG w={w:g}, eager", images_per_s=batch / timed(diffusers_call(w), args.repeats))

    cond = adapter.encode(prompts).conditioning.to(DEVICE)
    null = adapter.null()
    enhancer = Enhancer.for_text(adapter.text).to(DEVICE).eval()
    with torch.no_grad():
        enhanced = apply_enhancer(enhancer, cond, null)
        enhancer_s = timed(lambda: apply_enhancer(enhancer, cond, null), repeats=20)
    settings = SampleSettings(model=f"{args.arch}-random", family=adapter.family, enhancer="bench", enhancer_sha256=None,
                              alpha=1.0, cfg=1.0, negative_prompt="", steps=STEPS, scheduler="dpmsolver++", seed=0,
                              height=size, width=size, num_per_prompt=1)
    job = SampleJob(adapter, prompts * args.batches, _tile(enhanced, args.batches),
                    adapter.unconditional(None), settings)
    for label in ("eager",) if args.no_compile else ("eager", "compiled"):
        if label == "compiled":
            adapter.compile_denoiser(vae_decoder=True)
            run_job(job, args.out / f"warmup-{label}", batch)  # compile outside the timing
        synchronize()
        start = time.perf_counter()
        run_job(job, args.out / f"dice-{label}", batch)
        synchronize()
        seconds = time.perf_counter() - start
        emit(what=f"dice sample (DICE, cfg 1, {label}, PNGs written)", images_per_s=len(job.prompts) / seconds,
             enhancer_ms_per_batch=enhancer_s * 1000, sampling_call_ms=seconds / args.batches * 1000,
             enhancer_overhead_percent=100 * enhancer_s / (seconds / args.batches))
    # The same compiled models inside diffusers' own pipeline, CFG w=5: the ratio at equal footing.
    compiled = "" if args.no_compile else "compiled denoiser + VAE decoder"
    emit(what=f"diffusers {name}, CFG w=5, {compiled or 'eager'}",
         images_per_s=batch / timed(diffusers_call(5.0), args.repeats))
    # Where the time goes: DICE embeddings through the pipeline alone (no PNGs), and the VAE decode.
    pipe = adapter.pipeline(make_scheduler("dpmsolver++", adapter.scheduler.config))
    seconds = timed(lambda: pipe(**adapter.pipeline_inputs(enhanced, None), guidance_scale=1.0, num_inference_steps=STEPS,
                                 height=size, width=size, generator=torch.Generator(DEVICE).manual_seed(0),
                                 output_type="pil"), args.repeats)
    emit(what=f"diffusers {name} fed DICE embeddings, cfg 1, {compiled or 'eager'}, PIL out (no PNGs)", images_per_s=batch / seconds)
    # CFG fed precomputed embeddings too: the pipeline calls above encode their prompts on every call
    # (T5-XXL for PixArt-alpha), which the DICE rows do not; this is the like-for-like CFG baseline.
    negative = adapter.unconditional(None).repeat(batch)
    seconds = timed(lambda: pipe(**adapter.pipeline_inputs(cond, negative), guidance_scale=5.0, num_inference_steps=STEPS,
                                 height=size, width=size, generator=torch.Generator(DEVICE).manual_seed(0),
                                 output_type="pil"), args.repeats)
    emit(what=f"diffusers {name} fed prompt embeddings, CFG w=5, {compiled or 'eager'}, PIL out (no PNGs)", images_per_s=batch / seconds)
    factor = 2 ** (len(adapter.vae.config.block_out_channels) - 1)
    latents = torch.randn(batch, 4, size // factor, size // factor, device=DEVICE, dtype=DTYPE)
    with torch.no_grad():
        decode_s = timed(lambda: adapter.vae.decode(latents / adapter.vae.config.scaling_factor), args.repeats)
    emit(what=f"VAE decode of one batch{'' if args.no_compile else ', compiled, channels-last'}", seconds=decode_s)
    emit(what="peak GPU memory", max_memory_gb=peak_memory_gb())


def _tile(cond, times: int):
    from dicecli.families import Conditioning

    return Conditioning.cat([cond] * times)


if __name__ == "__main__":
    main()
