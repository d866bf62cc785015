"""The validation grid a `dice distill` checkpoint carries: fixed prompts and seeds, columns unguided | CFG | DICE."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from dicecli.families import Conditioning, FamilyAdapter
from dicecli.files import atomic_path
from dicecli.method import apply_enhancer
from dicecli.sampling import generate, image_grid
from dicecli.settings import DistillConfig, SampleConfig


def validation_prompts(adapter: FamilyAdapter, captions: list[str], count: int = 4) -> tuple[Conditioning, Conditioning]:
    """The grid's prompts (the first distinct captions) encoded, and CFG's negative branch."""
    prompts = list(dict.fromkeys(captions[: min(len(captions), 64)]))[:count]
    return adapter.encode(prompts).conditioning.to(adapter.device), adapter.unconditional(None)


@torch.no_grad()
def validation_grid(adapter: FamilyAdapter, enhancer, prompts: tuple[Conditioning, Conditioning], null: Conditioning,
                    config: DistillConfig, resolution: int, path: Path) -> None:
    adapter.require("vae")
    cond, unconditional = prompts
    enhanced = apply_enhancer(enhancer, cond, null)
    seeds = list(range(len(cond)))
    how = SampleConfig(steps=config.validation_steps, height=resolution, width=resolution)
    columns = [generate(adapter, cond, None, how, seeds),
               generate(adapter, cond, unconditional, replace(how, cfg=config.guidance_scale), seeds),
               generate(adapter, enhanced, None, how, seeds)]
    grid = image_grid([list(row) for row in zip(*columns)], ["unguided", f"CFG w={config.guidance_scale:g}", "DICE"])
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
