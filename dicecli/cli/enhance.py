"""`dice enhance`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report, show_progress
from dicecli.cli.options import (ClipSkipOption, EmbeddingOption, LoraOption, AlphaOption, DeviceOption, Dtype, DtypeOption, EnhancePartOption, JsonOption, OptionalModel,
                                 QuietOption, layered, value)
from dicecli.settings import EnhanceConfig, SampleOptions


@app.command("enhance")
def enhance_command(
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file (.txt/.jsonl/.json), embedding cache (.h5), or - for stdin.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Enhanced embedding cache to write (- for stdout).")] = ...,
    enhancer: Annotated[str, typer.Option("--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships (docs/architecture.md, \"Plug-ins\").")] = ...,
    model: OptionalModel = None,
    clip_skip: ClipSkipOption = None,
    embedding: EmbeddingOption = None,
    lora: LoraOption = None,
    alpha: AlphaOption = None,
    enhance_part: EnhancePartOption = None,
    negative: Annotated[Optional[str], typer.Option("--negative", help="Negative prompt given to the enhancer (default: the cache's, else none).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help=f"Prompts per batch {layered(EnhanceConfig, 'batch_size')}.")] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Apply an enhancer to prompts or an embedding cache; only the text encoder is loaded."""
    from dicecli.enhance import enhance
    from dicecli.runtime import Runtime

    options = SampleOptions(model=model, enhancer=enhancer, alpha=alpha, part=value(enhance_part), negative=negative,
                            clip_skip=clip_skip, embeddings=tuple(embedding or ()), loras=tuple(lora or ()))
    runtime = Runtime(*devices(device, dtype), batch_size, show_progress(quiet), notes(quiet))
    result = enhance(source, output, options, runtime)
    report(result.as_dict(), as_json, f"{'stdout' if output == '-' else output}: {result.prompts} prompts enhanced (alpha {result.alpha:g}).",
           quiet, data_on_stdout=output == "-")
