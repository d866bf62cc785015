"""`dice trigger`: trigger words that move the embedding as the enhancer does (docs/analyses.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report, show_progress
from dicecli.cli.options import (ClipSkipOption, AlphaOption, DeviceOption, Dtype, DtypeOption, EnhancerArgument, JsonOption,
                                 EnhancerNegativeOption, OptionalModel, QuietOption)


@app.command("trigger")
def trigger_command(
    enhancer: EnhancerArgument,
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file (the prompt set to search on), plain embedding cache, or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write OUTPUT.json (the words, distances) and OUTPUT.txt (the prompts with their suffix, for `dice sample` with no enhancer).")] = None,
    model: OptionalModel = None,
    clip_skip: ClipSkipOption = None,
    length: Annotated[int, typer.Option("--length", help="Words in the suffix.")] = 4,
    iterations: Annotated[int, typer.Option("--iterations", help="Search iterations at most (each keeps the best single-word swap).")] = 30,
    top_k: Annotated[int, typer.Option("--top-k", help="Gradient-ranked candidate words scored per position and iteration.")] = 32,
    per_prompt: Annotated[bool, typer.Option("--per-prompt", help="A suffix for each prompt instead of one for the whole set.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the starting suffix and the random-words baseline.")] = 0,
    alpha: AlphaOption = None,
    negative: EnhancerNegativeOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Trigger words: a suffix of real words whose plain encoding moves the embedding as the enhancer does, usable
    in any tool that takes a prompt, with no enhancer."""
    from dataclasses import asdict

    from dicecli.analysis.triggers import TriggerSearch, find_triggers
    from dicecli.runtime import Runtime
    from dicecli.settings import SampleOptions
    from dicecli.cli.app import info

    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative, clip_skip=clip_skip)
    result = find_triggers(source, Path(output) if output else None, options,
                           TriggerSearch(length, iterations, top_k, per_prompt, seed),
                           Runtime(*devices(device, dtype), note=notes(quiet)),
                           progress=lambda line: info(line, not show_progress(quiet) or as_json))
    shown = repr(result.suffixes[0]) if result.universal else f"{len(result.suffixes)} suffixes (one per prompt)"
    report({k: v for k, v in asdict(result).items() if k != "per_prompt"}, as_json,
           f"trigger words {shown}: relative distance to the enhanced embeddings {result.distance:.3f} (the plain "
           f"prompt: 1; {len(result.suffixes[0].split())} random words: {result.random_distance:.3f})"
           + (f"; {result.output}" if result.output else "") + ".", quiet)
