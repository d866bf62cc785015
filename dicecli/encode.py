"""`dice encode`: prompts -> HDF5 embedding cache, appendable and written atomically."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dicecli import distributed, faults
from dicecli.cache import (EMBEDDINGS_FORMAT, CacheWriter, EmbeddingCache, text_attrs, clip_skip_of, new_header,
                           storage_dtype)
from dicecli.cachejob import CacheJob, run_cache_job
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import load_adapter
from dicecli.files import (STDIO, check_output, refuse_stdio, check_stdout_takes_binary, check_writable, main_lock, remove_stale_temporaries,
                           write_to_stdout)
from dicecli.prompts import unique
from dicecli.refs import ModelRef
from dicecli.runtime import Runtime
from dicecli.settings import check_multiple_of_8


@dataclass
class EncodeResult:
    output: str
    model: str
    family: str
    prompts_total: int
    prompts_new: int
    truncated: int
    tokens: int
    context_dim: int

    def as_dict(self) -> dict:
        return asdict(self)


def encode_prompts(prompts: list[str], ref: ModelRef, output: str, runtime: Runtime, negative: str | None = None,
                   inputs: list[Path] = ()) -> EncodeResult:
    """Encode into OUTPUT (`runtime.batch_size` prompts a batch), appending to an existing cache. Two runs
    appending to one cache take turns (an OS lock beside the file): the second reads what the first added, so
    nothing is lost."""
    if output == STDIO:
        refuse_stdio("-o")
        check_stdout_takes_binary("an HDF5 embedding cache")
        return _encode(prompts, ref, output, negative, runtime)
    check_writable(Path(output))
    check_output(Path(output), [*inputs, *model_paths(ref)])
    with main_lock(Path(output), "Cache", wait=True):
        return _encode(prompts, ref, output, negative, runtime)


def _encode(prompts: list[str], ref: ModelRef, output: str, negative: str | None, runtime: Runtime) -> EncodeResult:
    batch_size, device, dtype, progress = runtime.batch_size, runtime.device, runtime.dtype, runtime.progress
    to_stdout = output == STDIO
    out = Path(output)
    existing: dict | None = None
    existing_prompts: set[str] = set()
    if not to_stdout:
        if distributed.current().main:
            remove_stale_temporaries(out)
        if out.exists():
            existing, existing_prompts, existing_negative = _read_existing(out)
            if existing["family"] != ref.family:
                raise IncompatibleError(
                    f"{out} holds {existing['family']} embeddings of {existing['model']}, not {ref.family} ones of "
                    f"{ref.given}; write to another file with -o."
                )
            if existing.get("enhancer"):
                raise IncompatibleError(
                    f"{out} holds embeddings enhanced with {existing['enhancer']}; append plain prompts to a cache "
                    "from `dice encode`, or write to another file with -o."
                )
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1.")

    adapter = load_adapter(ref, device, dtype)
    fingerprint = adapter.text_encoder_fingerprint()
    if existing and clip_skip_of(existing) != adapter.clip_skip:
        raise IncompatibleError(
            f"{out} holds embeddings made with clip skip {clip_skip_of(existing)}, not {adapter.clip_skip}; write to "
            f"another file with -o, or append with --clip-skip {clip_skip_of(existing)}."
        )
    if existing and existing["text_encoder_fingerprint"] != fingerprint:
        raise IncompatibleError(
            f"{out} was encoded with model {existing['model']}, whose text encoder differs from that of "
            f"{ref.given}; write to another file with -o, or append with --model {existing['model']}."
        )
    new_prompts = [p for p in unique(prompts) if p not in existing_prompts]
    negative_changed = negative is not None and (existing is None or existing_negative != [negative])
    result = EncodeResult(
        output=output, model=ref.given, family=ref.family, prompts_total=len(existing_prompts) + len(new_prompts),
        prompts_new=len(new_prompts), truncated=0, tokens=adapter.text.tokens, context_dim=adapter.text.width,
    )
    if existing is not None and not new_prompts and not negative_changed:
        return result  # already complete: nothing to do, file untouched

    header = existing or new_header(
        EMBEDDINGS_FORMAT, family=ref.family, model=ref.given, model_resolved=ref.resolved, fingerprint=fingerprint,
        dtype=storage_dtype(dtype), tokens=adapter.text.tokens, context_dim=adapter.text.width,
    ) | text_attrs(adapter)

    def fill(writer: CacheWriter, start: int, stop: int):
        for batch, encoded in adapter.encode_batches(new_prompts[start:stop], batch_size):
            writer.append(batch, encoded.conditioning)
            faults.point("encode.batch")
            result.truncated += encoded.truncated
            yield len(batch)

    def finish(writer: CacheWriter) -> None:
        if negative_changed:
            writer.replace([negative], adapter.encode([negative]).conditioning, prefix="negative_")

    def write(path: Path) -> None:
        plan = {"prompts": new_prompts, "batch_size": batch_size, "header": {k: v for k, v in header.items() if k != "created"}}
        job = CacheJob(header, fill, len(new_prompts), batch_size, plan, existing=out if existing is not None else None,
                       finish=finish, payload=lambda: result.truncated, desc="encode")
        truncated = run_cache_job(path, job, progress)
        result.truncated = sum(truncated)

    if to_stdout:
        write_to_stdout(write)
    else:
        write(out)
    return result


def model_paths(ref: ModelRef) -> list[Path]:
    """A model's own files, which no output may replace."""
    return [ref.source.local_path] if ref.source.local_path else []


def _read_existing(out: Path):
    try:
        with EmbeddingCache(out) as cache:
            return cache.attrs, set(cache.prompts), cache.negative_prompts
    except UsageError:
        raise UsageError(
            f"Output {out} exists and is not a dice embedding cache; choose another -o or remove the file."
        ) from None


@dataclass
class LatentsResult:
    output: str
    model: str
    images: int
    latent_shape: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


def encode_images(data_spec: str, ref: ModelRef, output: str, resolution: int, runtime: Runtime) -> LatentsResult:
    """Build a `dice-latents` cache: VAE latent means x scaling factor, captions alongside."""
    out = Path(output)
    check_writable(out)
    with main_lock(out, "Latent cache", wait=True):
        return _encode_images(data_spec, ref, out, resolution, runtime)


def _encode_images(data_spec: str, ref: ModelRef, out: Path, resolution: int, runtime: Runtime) -> LatentsResult:
    batch_size, device, dtype, progress = runtime.batch_size, runtime.device, runtime.dtype, runtime.progress
    from dicecli.cache import LATENTS_FORMAT
    from dicecli.data import ImageDataset, open_training_data

    data = open_training_data(data_spec, ref.recipe.name if ref.recipe else "")
    check_output(out, [Path(data.source), *model_paths(ref)])
    if distributed.current().main:
        remove_stale_temporaries(out)
    if data.latents is not None:
        raise UsageError(f"--images {data_spec} is already a latent cache; give an imagefolder or a COCO folder.")
    check_multiple_of_8("--resolution", resolution)
    from dicecli.runtime import check_fits

    check_fits(resolution, resolution, device, dtype, f"--resolution {resolution}")
    adapter = load_adapter(ref, device, dtype)
    vae = adapter.vae
    header = new_header(
        LATENTS_FORMAT, family=ref.family, model=ref.given, model_resolved=ref.resolved,
        fingerprint=adapter.text_encoder_fingerprint(), dtype=storage_dtype(dtype), tokens=adapter.text.tokens,
        context_dim=adapter.text.width,
    )
    header.update(resolution=resolution, scaling_factor=float(vae.config.scaling_factor), source=data.source,
                  vae_fingerprint=adapter.vae_fingerprint(), **text_attrs(adapter))
    dataset = ImageDataset(data, resolution)
    shape: list[int] = []

    def fill(writer: CacheWriter, start: int, stop: int):
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(start, stop)), batch_size=batch_size,
                                             num_workers=0)
        for images, rows in loader:
            latents = adapter.images_to_latents(images)
            captions = [data.captions[i] for i in rows.tolist()]
            writer.append_array("latents", latents.cpu().numpy())
            # the captions' embeddings too, so that dice distill never runs the text encoder (docs/formats.md)
            writer.append(captions, adapter.encode(captions).conditioning)
            shape[:] = list(latents.shape[1:])
            faults.point("latents.batch")
            yield len(rows)

    plan = {"source": data.source, "images": len(data), "batch_size": batch_size,
            "header": {k: v for k, v in header.items() if k != "created"}}
    job = CacheJob(header, fill, len(data), batch_size, plan, payload=lambda: shape, desc="latents",
                   random_access=True)  # distill reads random rows
    shapes = run_cache_job(out, job, progress)
    return LatentsResult(str(out), ref.given, len(data), next((s for s in shapes if s), shape))
