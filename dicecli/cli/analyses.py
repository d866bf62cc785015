"""`dice inspect`, `dice attention` and `dice trigger`: the paper's analyses (docs/analyses.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report
from dicecli.cli.options import (AlphaOption, CfgOption, DeviceOption, Dtype, DtypeOption, HeightOption, JsonOption,
                                 NegativeOption, OptionalModel, QuietOption, SchedulerOption, SeedOption, StepsOption,
                                 WidthOption, value)
from dicecli.errors import UsageError

EnhancerArgument = Annotated[str, typer.Argument(metavar="ENHANCER", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships.")]


@app.command("inspect")
def inspect_command(
    enhancer: EnhancerArgument,
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file, plain embedding cache (.h5), or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write OUTPUT.json, OUTPUT.csv (per prompt), OUTPUT-positions.csv and OUTPUT.png (per token position).")] = None,
    model: OptionalModel = None,
    alpha: AlphaOption = None,
    negative: NegativeOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """What an enhancer changes: cosine and relative change of the semantic and padding parts, per prompt and per
    token position (the paper's section 4.3)."""
    from dataclasses import asdict

    from dicecli.analysis.embeddings import inspect_enhancer, summary_table
    from dicecli.runtime import Runtime
    from dicecli.settings import SampleOptions

    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative)
    result = inspect_enhancer(source, Path(output) if output else None, options,
                              Runtime(*devices(device, dtype), note=notes(quiet)))
    if as_json:
        summary = {k: v for k, v in asdict(result).items() if k not in ("per_prompt", "positions")}
        report(summary, True, "", quiet)
    elif not quiet:
        typer.echo(summary_table(result), nl=False)


@app.command("attention")
def attention_command(
    enhancer: EnhancerArgument,
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The prompt, in quotes.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The grid of maps (.png); OUTPUT.json beside it says which tokens and layers.")] = "attention.png",
    model: OptionalModel = None,
    words: Annotated[Optional[str], typer.Option("--words", help="Comma-separated words of the prompt to show, and <end> (end-of-text token) or <padding> (default: the prompt's words, <end>, <padding>).")] = None,
    at_steps: Annotated[Optional[str], typer.Option("--at-steps", help="Comma-separated denoising steps to show, 1-based (default: at a quarter, half, three quarters and the end).")] = None,
    alpha: AlphaOption = None,
    negative: NegativeOption = None,
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

    chosen_words = split(words, "--words")
    chosen_steps = [number(s, "--at-steps") for s in split(at_steps, "--at-steps") or []] or None
    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative, cfg=cfg, steps=steps,
                            scheduler=value(scheduler), height=height, width=width, seed=seed)
    result = attention_maps(prompt, Path(output), options, Runtime(*devices(device, dtype), note=notes(quiet)),
                            chosen_words, chosen_steps)
    report(asdict(result), as_json, f"{result.output}: maps of {', '.join(result.words)} at steps "
           f"{', '.join(map(str, result.steps))} ({result.grid[0]}x{result.grid[1]}, {len(result.layers)} layers).", quiet)


def split(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} is empty; give comma-separated values.")
    return items


def number(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a whole number; give comma-separated step numbers (e.g. 1,10,20).") from None


@app.command("trigger")
def trigger_command(
    enhancer: EnhancerArgument,
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file (the prompt set to search on), plain embedding cache, or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write OUTPUT.json (the words, distances) and OUTPUT.txt (the prompts with their suffix, for `dice sample` with no enhancer).")] = None,
    model: OptionalModel = None,
    length: Annotated[int, typer.Option("--length", help="Words in the suffix.")] = 4,
    iterations: Annotated[int, typer.Option("--iterations", help="Search iterations at most (each keeps the best single-word swap).")] = 30,
    top_k: Annotated[int, typer.Option("--top-k", help="Gradient-ranked candidate words scored per position and iteration.")] = 32,
    per_prompt: Annotated[bool, typer.Option("--per-prompt", help="A suffix for each prompt instead of one for the whole set.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the starting suffix and the random-words baseline.")] = 0,
    alpha: AlphaOption = None,
    negative: NegativeOption = None,
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

    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative)
    result = find_triggers(source, Path(output) if output else None, options,
                           TriggerSearch(length, iterations, top_k, per_prompt, seed),
                           Runtime(*devices(device, dtype), note=notes(quiet)),
                           progress=lambda line: info(line, quiet or as_json))
    shown = repr(result.suffixes[0]) if result.universal else f"{len(result.suffixes)} suffixes (one per prompt)"
    report({k: v for k, v in asdict(result).items() if k != "per_prompt"}, as_json,
           f"trigger words {shown}: relative distance to the enhanced embeddings {result.distance:.3f} (the plain "
           f"prompt: 1; {len(result.suffixes[0].split())} random words: {result.random_distance:.3f})"
           + (f"; {result.output}" if result.output else "") + ".", quiet)
