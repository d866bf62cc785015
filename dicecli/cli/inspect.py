"""`dice inspect`: what an enhancer changes, part by part (docs/analyses.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report
from dicecli.cli.options import (ClipSkipOption, AlphaOption, DeviceOption, Dtype, DtypeOption, EnhancerArgument, JsonOption,
                                 EnhancerNegativeOption, OptionalModel, QuietOption)


@app.command("inspect")
def inspect_command(
    enhancer: EnhancerArgument,
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file, plain embedding cache (.h5), or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write OUTPUT.json, OUTPUT.csv (per prompt), OUTPUT-positions.csv and OUTPUT.png (per token position).")] = None,
    model: OptionalModel = None,
    clip_skip: ClipSkipOption = None,
    alpha: AlphaOption = None,
    negative: EnhancerNegativeOption = None,
    device: DeviceOption = "auto",
    pca: Annotated[bool, typer.Option("--pca", help="Also the principal components of the original and the enhanced embeddings: the variance the top 3 explain, the components to 80 %, and OUTPUT-pca.png (the paper's Appendix A.2; at least 3 prompts).")] = False,
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

    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, negative=negative, clip_skip=clip_skip)
    result = inspect_enhancer(source, Path(output) if output else None, options,
                              Runtime(*devices(device, dtype), note=notes(quiet)), pca)
    if as_json:
        summary = {k: v for k, v in asdict(result).items() if k not in ("per_prompt", "positions")}
        if summary["pca"]:
            summary["pca"].pop("scatter")  # in OUTPUT.json; the summary keeps the numbers
        report(summary, True, "", quiet)
    elif not quiet:
        typer.echo(summary_table(result), nl=False)
