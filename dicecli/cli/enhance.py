"""`dice enhance`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report, show_progress
from dicecli.cli.options import (AlphaOption, DeviceOption, Dtype, DtypeOption, EnhancePartOption, JsonOption, OptionalModel,
                                 QuietOption, value)
from dicecli.settings import EnhanceConfig


@app.command("enhance")
def enhance_command(
    source: Annotated[str, typer.Argument(metavar="INPUT", help="Prompts file (.txt/.jsonl/.json), embedding cache (.h5), or - for stdin.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Enhanced embedding cache to write (- for stdout).")] = ...,
    enhancer: Annotated[str, typer.Option("--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships (docs/plugins.md).")] = ...,
    model: OptionalModel = None,
    alpha: AlphaOption = None,
    enhance_part: EnhancePartOption = None,
    negative: Annotated[Optional[str], typer.Option("--negative", help="Negative prompt given to the enhancer (default: the cache's, else none).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per batch.")] = EnhanceConfig.batch_size,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Apply an enhancer to prompts or an embedding cache; only the text encoder is loaded."""
    from dicecli.enhance import enhance

    torch_device, torch_dtype = devices(device, dtype)
    result = enhance(source, output, enhancer, model=model, alpha=alpha, negative=negative, batch_size=batch_size,
                     device=torch_device, dtype=torch_dtype, progress=show_progress(quiet), note=notes(quiet),
                     part=value(enhance_part))
    report(result.as_dict(), as_json, f"{'stdout' if output == '-' else output}: {result.prompts} prompts enhanced (alpha {result.alpha:g}).",
           quiet, data_on_stdout=output == "-")
