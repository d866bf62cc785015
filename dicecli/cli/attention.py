"""`dice attention`: cross-attention maps per word, original vs enhanced (docs/analyses.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report
from dicecli.cli.options import (ClipSkipOption, AlphaOption, CfgOption, DeviceOption, Dtype, DtypeOption, EnhancerArgument,
                                 HeightOption, JsonOption, PromptNegativeOption, PromptModel, QuietOption, SchedulerOption,
                                 SeedOption, StepsOption, WidthOption, comma_list, whole_number, value)


@app.command("attention")
def attention_command(
    enhancer: EnhancerArgument,
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The prompt, in quotes.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The grid of maps (.png); OUTPUT.json beside it says which tokens and layers.")] = "attention.png",
    model: PromptModel = None,
    clip_skip: ClipSkipOption = None,
    words: Annotated[Optional[str], typer.Option("--words", help="Comma-separated words of the prompt to show, and <end> (end-of-text token) or <padding> (default: the prompt's words, <end>, <padding>).")] = None,
    at_steps: Annotated[Optional[str], typer.Option("--at-steps", help="Comma-separated denoising steps to show, 1-based (default: at a quarter, half, three quarters and the end).")] = None,
    alpha: AlphaOption = None,
    negative: PromptNegativeOption = None,
    cfg: CfgOption = 1.0,
    steps: StepsOption = None,
    scheduler: SchedulerOption = None,
    seed: SeedOption = 0,
    height: HeightOption = None,
    width: WidthOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Cross-attention maps per word, original vs enhanced, at chosen steps (the paper's Figure 9); the images are
    exactly those `dice sample` makes."""
    from dataclasses import asdict

    from dicecli.analysis.attention import attention_maps
    from dicecli.runtime import Runtime
    from dicecli.settings import SampleOptions

    chosen_words = comma_list(words, "--words")
    chosen_steps = [whole_number(s, "--at-steps") for s in comma_list(at_steps, "--at-steps") or []] or None
    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative, clip_skip=clip_skip,
                            cfg=cfg, steps=steps,
                            scheduler=value(scheduler), height=height, width=width, seed=seed)
    result = attention_maps(prompt, Path(output), options, Runtime(*devices(device, dtype), note=notes(quiet)),
                            chosen_words, chosen_steps)
    report(asdict(result), as_json, f"{result.output}: maps of {', '.join(result.words)} at steps "
           f"{', '.join(map(str, result.steps))} ({result.grid[0]}x{result.grid[1]}, {len(result.layers)} layers).", quiet)
