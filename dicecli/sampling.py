"""Sampling from embeddings with diffusers pipelines and schedulers (never a hand-written sampler)."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from dicecli.errors import UsageError
from dicecli.families import Conditioning, FamilyAdapter

# name -> (diffusers scheduler class name, extra config); built from the model's own scheduler config
SCHEDULERS = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(name: str, config):
    import diffusers

    if name not in SCHEDULERS:
        raise UsageError(f"--scheduler {name!r} is not known; choose one of {', '.join(SCHEDULERS)}.")
    class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


@torch.no_grad()
def generate(adapter: FamilyAdapter, cond: Conditioning, negative: Conditioning | None, *, cfg: float,
             steps: int, scheduler: str, seeds: list[int], height: int, width: int) -> list[Image.Image]:
    """One image per row of `cond`, image i from seed seeds[i]; cfg <= 1 means one evaluation per step."""
    pipe = adapter.pipeline(make_scheduler(scheduler, adapter.scheduler.config))
    if cfg > 1 and negative is not None and len(negative) == 1 and len(cond) > 1:
        negative = Conditioning.cat([negative] * len(cond))
    generators = [torch.Generator(adapter.device).manual_seed(s) for s in seeds]
    return pipe(
        **adapter.pipeline_embeds(cond, negative if cfg > 1 else None), guidance_scale=cfg,
        num_inference_steps=steps, height=height, width=width, generator=generators, output_type="pil",
    ).images


def image_grid(rows: list[list[Image.Image]], column_titles: list[str] | None = None) -> Image.Image:
    """Paste images into a grid, with an optional title strip above the columns."""
    w, h = rows[0][0].size
    strip = 14 if column_titles else 0
    grid = Image.new("RGB", (w * len(rows[0]), h * len(rows) + strip), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(column_titles or []):
        draw.text((j * w + 2, 1), title, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image, (j * w, strip + i * h))
    return grid
