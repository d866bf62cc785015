"""`dice encode`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, report, show_progress, warn
from dicecli.cli.options import ClipSkipOption, EmbeddingOption, LoraOption, DeviceOption, Dtype, DtypeOption, JsonOption, ModelOption, QuietOption, VaeOption, layered
from dicecli.errors import UsageError
from dicecli.settings import EncodeConfig


@app.command("encode")
def encode_command(
    prompts: Annotated[Optional[str], typer.Argument(metavar="PROMPTS", help="Prompts: .txt (one a line), .jsonl, COCO captions .json, or - for stdin.")] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="HDF5 cache to write or extend (- for stdout).")] = ...,
    model: ModelOption = ...,
    negative: Annotated[Optional[str], typer.Option("--negative", help="Also store the embedding of this negative prompt.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help=f"Prompts per text-encoder call {layered(EncodeConfig, 'batch_size')}; with --images, images per VAE call {layered(EncodeConfig, 'image_batch_size')}.")] = None,
    images: Annotated[Optional[str], typer.Option("--images", help="Instead of prompts: build a latent cache of this imagefolder/COCO data for distill.")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="With --images: image size (default: the recipe's, else the size distill trains at).")] = None,
    vae: VaeOption = None,
    clip_skip: ClipSkipOption = None,
    embedding: EmbeddingOption = None,
    lora: LoraOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Encode prompts with MODEL's text encoder into an HDF5 embedding cache (appends only new prompts).

    With --images DATA, encode training images with MODEL's VAE into a latent cache instead.
    """
    from dicecli.encode import encode_images, encode_prompts
    from dicecli.prompts import read_prompts
    from dicecli.refs import model_defaults, resolve_model
    from dicecli.runtime import Runtime

    if (prompts is None) == (images is None):
        raise UsageError("dice encode needs either PROMPTS or --images DATA (not both).")
    ref = resolve_model(model, vae=vae, clip_skip=clip_skip, embeddings=tuple(embedding or ()),
                        loras=tuple(lora or ()))
    chosen = EncodeConfig.resolve(ref.family, ref.recipe, model_defaults(ref) if images else None, resolution=resolution)
    torch_device, torch_dtype = devices(device, dtype)
    if images is not None:
        runtime = Runtime(torch_device, torch_dtype, batch_size or chosen.image_batch_size, show_progress(quiet))
        latents = encode_images(images, ref, output, chosen.resolution, runtime)
        report(latents.as_dict(), as_json, f"{output}: {latents.images} images encoded to latents {latents.latent_shape}.", quiet)
        return
    runtime = Runtime(torch_device, torch_dtype, batch_size or chosen.batch_size, show_progress(quiet))
    result = encode_prompts(read_prompts(prompts), ref, output, runtime, negative, [Path(prompts)] if prompts != "-" else [])
    if result.truncated:
        warn(f"{result.truncated} of {result.prompts_new} prompts are longer than {result.tokens} tokens and were truncated.")
    report(
        result.as_dict(), as_json,
        f"{'stdout' if output == '-' else output}: {result.prompts_new} new prompts encoded, {result.prompts_total} in the cache "
        f"({result.family}, {result.tokens}x{result.context_dim}).",
        quiet, data_on_stdout=output == "-",
    )
