"""`dice transfer`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from dicecli.cli.app import app, devices, notes, report, show_progress
from dicecli.cli.options import (ClipSkipOption, EmbeddingOption, LoraOption, AlphaOption, CfgOption, DeviceOption, Dtype, DtypeOption, EnhancePartOption, HeightOption,
                                 JsonOption,
                                 NegativeOption, PerPromptOption, QuietOption, SampleBatchOption, SchedulerOption,
                                 SeedOption, StepsOption, WidthOption, value)
from dicecli.errors import UsageError


@app.command("transfer")
def transfer_command(
    paths: Annotated[List[str], typer.Argument(metavar="ENHANCER... INPUT", help="Enhancer files, then the prompts file.")],
    to: Annotated[List[str], typer.Option("--to", help="Target model (repeat, or comma-separate): recipe, hub id, folder, .safetensors.")] = ...,
    output: Annotated[str, typer.Option("-o", "--output", help="Folder for the sample folders, grid.png and the compatibility report.")] = ...,
    alpha: AlphaOption = None,
    enhance_part: EnhancePartOption = None,
    clip_skip: ClipSkipOption = None,
    embedding: EmbeddingOption = None,
    lora: LoraOption = None,
    cfg: CfgOption = 1.0,
    negative: NegativeOption = None,
    steps: StepsOption = None,
    scheduler: SchedulerOption = None,
    seed: SeedOption = 0,
    batch_size: SampleBatchOption = 8,
    height: HeightOption = None,
    width: WidthOption = None,
    num_per_prompt: PerPromptOption = 1,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Apply enhancers to other models of their family: sample folders, a grid and a compatibility report.

    One sample folder per (model, enhancer) pair plus the unguided baseline per model.
    """
    from dicecli.runtime import Runtime
    from dicecli.settings import SampleOptions
    from dicecli.transfer import transfer

    if len(paths) < 2:
        raise UsageError("dice transfer needs ENHANCER... and then INPUT (a prompts file).")
    targets = [t for given in to for t in given.split(",") if t]
    options = SampleOptions(alpha=alpha, part=value(enhance_part), negative=negative, clip_skip=clip_skip, embeddings=tuple(embedding or ()),
                            loras=tuple(lora or ()), cfg=cfg, steps=steps,
                            scheduler=value(scheduler), height=height, width=width, seed=seed,
                            num_per_prompt=num_per_prompt)
    runtime = Runtime(*devices(device, dtype), batch_size, show_progress(quiet), notes(quiet))
    result = transfer(paths[:-1], targets, paths[-1], Path(output), options, runtime)
    report(vars(result), as_json, f"{result.output}: {len(result.folders)} sample folders, grid {result.grid}, "
           f"report {result.output}/compatibility.md.", quiet)
