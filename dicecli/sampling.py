"""Sampling from embeddings with diffusers pipelines and schedulers (never a hand-written sampler), into
sample folders (`dicecli.samplefolder`)."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from dicecli import distributed, faults
from dicecli.errors import DamagedError, UsageError
from dicecli.families import Conditioning, FamilyAdapter, adapter_class
from dicecli.files import check_output, check_shared, main_lock, sha256_of
from dicecli.method import enhance_conditioning
from dicecli.parts import check_coverage
from dicecli.samplefolder import (SampleSettings, open_for_writing, read_done, read_metadata_parts, remove_metadata_parts,
                                  save_image,
                                  write_metadata, write_metadata_part)
from dicecli.schedulers import SCHEDULERS
from dicecli.runtime import Runtime
from dicecli.settings import SampleConfig, SampleOptions, check_choice

if TYPE_CHECKING:
    from dicecli.preparation import Prepared


def make_scheduler(name: str, config):
    import diffusers

    check_choice("--scheduler", name, SCHEDULERS)
    class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


@torch.no_grad()
def generate(adapter: FamilyAdapter, cond: Conditioning, negative: Conditioning | None, how: "SampleConfig | SampleSettings",
             seeds: list[int], pipe=None) -> list[Image.Image]:
    """One image per row of `cond`, image i from seed seeds[i], with `how`'s scheduler, steps, cfg and size (set);
    cfg <= 1 means one evaluation per step.

    `negative` is the CFG negative branch (one row, or one per row), used only when cfg > 1.

    `pipe` (from adapter.pipeline()) may be passed to reuse it across calls; it always samples
    with `how.scheduler`, whatever scheduler it held before.
    """
    pipe = pipe or adapter.pipeline()
    pipe.scheduler = make_scheduler(how.scheduler, adapter.scheduler.config)
    negative = negative.repeat(len(cond)) if how.cfg > 1 else None
    generators = [torch.Generator(adapter.device).manual_seed(s) for s in seeds]
    images = pipe(
        **adapter.pipeline_inputs(cond, negative), guidance_scale=how.cfg,
        num_inference_steps=how.steps, height=how.height, width=how.width, generator=generators, output_type="pt",
    ).images
    if not torch.isfinite(images).all():  # would be written as black images, with exit 0
        raise DamagedError(
            f"The model produced NaN or infinite pixels (seeds {seeds[0]}..{seeds[-1]}); this comes from an enhancer "
            "strength far too large (--alpha) or a VAE that overflows in float16 (use --dtype bf16 or fp32, or an "
            "fp16-fix --vae). Nothing was written for these images."
        )
    return to_pil(images)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[N, 3, H, W] in [0, 1] -> PIL images, rounded exactly as diffusers' "pil" output but on the
    images' device, so only uint8 pixels cross to the CPU (a tenth of a second per batch at 1024 px)."""
    pixels = (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


def open_image(path: Path) -> Image.Image:
    """An image file as RGB, read fully (the file is closed)."""
    with Image.open(path) as image:
        return image.convert("RGB")


LINE_HEIGHT = 12  # PIL's default font is 11 px high


def wrapped(draw: ImageDraw.ImageDraw, text: str, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels: at spaces, and inside a word only when it alone is wider."""
    lines: list[str] = []
    for word in text.split():
        while len(word) > 1 and draw.textlength(word) > width:  # a word wider than the column: cut it
            cut = max([n for n in range(1, len(word)) if draw.textlength(word[:n]) <= width] or [1])
            lines.append(word[:cut])
            word = word[cut:]
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def image_grid(rows: list[list[Image.Image]], column_titles: list[str] | None = None,
               row_titles: list[str] | None = None) -> Image.Image:
    """Paste images into a grid; column titles above, wrapped to the column's width (so small images' titles never
    overlap), and row titles (e.g. the prompts) in a strip on the left, as many lines as the row has room for."""
    w, h = rows[0][0].size
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    columns = [wrapped(draw, title, w - 4) for title in column_titles or []]
    top = LINE_HEIGHT * max(map(len, columns)) + 2 if columns else 0
    left = max(w, 128) if row_titles else 0
    fits = max(1, (h - 2) // LINE_HEIGHT)
    grid = Image.new("RGB", (left + w * len(rows[0]), top + h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, lines in enumerate(columns):
        for k, line in enumerate(lines):
            draw.text((left + j * w + 2, 1 + k * LINE_HEIGHT), line, fill="black")
    for i, title in enumerate(row_titles or []):
        lines = wrapped(draw, title, left - 6)
        if len(lines) > fits:
            lines = lines[: fits - 1] + [lines[fits - 1] + "…"] if fits > 1 else [lines[0] + "…"]
        for k, line in enumerate(lines):
            draw.text((3, top + i * h + 1 + k * LINE_HEIGHT), line, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image, (left + j * w, top + i * h))
    return grid


@dataclass
class SampleJob:
    adapter: FamilyAdapter
    prompts: list[str]
    cond: Conditioning  # one row per prompt, already enhanced when an enhancer is used
    negative: Conditioning  # the CFG negative branch [1, T, D], used when cfg > 1
    settings: SampleSettings
    prepared: "Prepared | None" = None  # what it was made from (its inputs, which no output may replace)


@dataclass
class SampleResult:
    output: str
    images: int
    generated: int
    skipped: int
    nfe_per_image: int
    settings: dict = field(repr=False, default_factory=dict)


def make_job(prepared: "Prepared", options: SampleOptions, runtime: Runtime, adapter=None, enhancer=None) -> SampleJob:
    """The images to make from prepared inputs (`adapter` and a loaded `enhancer` may be shared, as transfer does)."""
    ref, device, dtype = prepared.ref, runtime.device, runtime.dtype
    chosen = options.config(ref.family, ref.recipe)
    check_seeds(options.seed, len(prepared.input.prompts) * options.num_per_prompt)
    native = adapter_class(ref.family).size_without_weights(ref.source)
    height, width = chosen.height or native, chosen.width or native
    check_size((width, height), native, runtime, ref.given)
    adapter = prepared.load(device, dtype, runtime.note, adapter=adapter)
    make_scheduler(chosen.scheduler, adapter.scheduler.config)
    check_steps(chosen.steps, adapter.scheduler.config)
    adapter.require(*adapter.pipeline_components)
    cond = prepared.conditioning()
    if prepared.enhancer is not None:
        net = enhancer or prepared.enhancer.load(device)
        cond = enhance_conditioning(net, cond, prepared.enhancer_negative(), prepared.alpha, prepared.part, dtype)
    made_by = prepared.provenance
    settings = SampleSettings(
        model=ref.given, family=ref.family, enhancer=made_by and made_by.enhancer,
        enhancer_sha256=made_by and made_by.enhancer_sha256, alpha=made_by and made_by.alpha, cfg=float(options.cfg),
        negative_prompt=prepared.negative, steps=chosen.steps, scheduler=chosen.scheduler, seed=options.seed,
        height=height, width=width, num_per_prompt=options.num_per_prompt,
        model_hash=sha256_of(ref.source.local_path)[:10] if ref.source.single_file else None,
        enhanced_part=made_by and made_by.part, clip_skip=ref.clip_skip if ref.clip_skip != 1 else None,
        embeddings=[e.record for e in ref.embeddings] or None, loras=[lora.record for lora in ref.loras] or None,
    )
    return SampleJob(adapter, prepared.input.prompts, cond.to(device, dtype), prepared.cfg_negative().to(device, dtype),
                     settings, prepared)


SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes 0 .. 2**64 - 1
FAR_FROM_NATIVE = 2.0


def check_seeds(seed: int, images: int) -> None:
    """Image i uses seed + i: every one of them must be a seed the generator takes."""
    if seed < 0:
        raise UsageError(f"--seed {seed} must be 0 or more (image i uses seed + i).")
    if seed + images - 1 >= SEED_LIMIT:
        raise UsageError(f"--seed {seed} is too large: image i uses seed + i, and seed + {images - 1} passes the "
                         f"generator's limit of 2**64 - 1; use a seed below {SEED_LIMIT - images + 1}.")


def check_steps(steps: int, scheduler_config) -> None:
    limit = int(scheduler_config.get("num_train_timesteps", 1000))
    if steps > limit:
        raise UsageError(f"--steps {steps} is more than the model's {limit} training timesteps; use --steps {limit} or fewer.")


def check_size(size: tuple[int, int], native: int | None, runtime: Runtime, model: str) -> None:
    """Before any weights load: a size (width, height) the device cannot hold is refused, one far from the model's
    native size noted, and a batch that will not fit gets the batch size that would."""
    from dicecli.runtime import check_fits, device_memory, vae_floor_bytes

    (width, height), device, batch_size, note = size, runtime.device, runtime.batch_size, runtime.note
    check_fits(height, width, device, runtime.dtype, f"--height {height} --width {width}")
    memory, per_image = device_memory(device), vae_floor_bytes(height, width, runtime.dtype)
    where = "the GPU" if device.type == "cuda" else "this machine"
    if memory and per_image * batch_size > memory:
        fits = max(1, int(memory // per_image))
        note(f"a batch of {batch_size} images of {width}x{height} needs at least {per_image * batch_size / 2**30:.0f} "
             f"GiB to decode, more than {where}'s {memory / 2**30:.0f} GiB; --batch-size {fits} would fit.")
    if native and max(height / native, native / height, width / native, native / width) > FAR_FROM_NATIVE:
        note(f"{width}x{height} is far from {model}'s native {native}x{native}; images at such sizes usually "
             "come out repeated or washed out.")


def run_job(job: SampleJob, folder: Path, batch_size: int, progress: bool = False) -> SampleResult:
    """Generate the missing images of `folder` (one run at a time). Image i uses seed + i and belongs to the fixed
    batch i // batch_size, so a resumed run makes exactly the images an uninterrupted one would, and so does a job
    of several processes, which deals the batches out (docs/distributed.md).

    PNGs of batch k are encoded on worker threads while the GPU makes batch k+1; the metadata is rewritten only
    once a batch's files are all in place, so it never lists a missing image.
    """
    group = distributed.current()
    check_output(folder, job.prepared.input_paths if job.prepared else [], folder=True)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"Output {folder} is a file; give a folder to -o.")
    if group.main:
        folder.mkdir(parents=True, exist_ok=True)
    with main_lock(folder, "Sample folder", wait=False):  # two runs into one folder: the second refuses
        return _run_job(job, folder, batch_size, progress, group)


def _run_job(job: SampleJob, folder: Path, batch_size: int, progress: bool, group) -> SampleResult:
    s = job.settings
    total = len(job.prompts) * s.num_per_prompt
    if group.main:
        done = open_for_writing(folder, s, job.prompts)
    group.meet(f"the opening of {folder}")
    if not group.main:
        check_shared(group, folder, "for -o")
        done = read_done(folder, s, job.prompts)
    groups = [list(range(g, min(g + batch_size, total))) for g in range(0, total, batch_size)]
    todo = group.deal([g for g in groups if any(i not in done for i in g)])
    pipe = job.adapter.pipeline()
    mine: dict[int, dict] = {}  # the images this process made (several processes: its metadata part)
    pending: list[tuple[Future, int, dict]] = []
    group.progress(len(done) if group.main else 0)

    def settle() -> None:
        for future, i, record in pending:
            future.result()
            mine[i] = record
        if pending:
            if group.several:
                write_metadata_part(folder, group.rank, mine)
            else:
                write_metadata(folder, {**done, **mine})
            bar.n = group.progress(len(pending))
            bar.refresh()
        pending.clear()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 4)) as writers, \
            tqdm(total=total, initial=len(done), unit="image", desc="sample", disable=not (progress and group.main),
                 leave=False) as bar:
        try:
            for batch in todo:
                rows = [i // s.num_per_prompt for i in batch]
                images = generate(job.adapter, job.cond[rows], job.negative, s, [s.seed + i for i in batch], pipe)
                settle()  # the previous batch's files, written while this batch was generated
                for i, image in zip(batch, images):
                    if i in done:
                        continue
                    record = s.record(i, job.prompts[i // s.num_per_prompt])
                    pending.append((writers.submit(save_image, image, folder / record["file_name"], record), i, record))
                faults.point("sample.batch")
                group.check()
        except BaseException:  # stopped (Ctrl-C, another rank's failure, a full disk): keep the images in place
            pending[:] = [p for p in pending if p[0].exception() is None]
            try:
                settle()
            except Exception:  # noqa: BLE001 - the original failure is the one to report
                pass
            raise
        settle()
    generated = sum(group.meet(f"the end of sampling into {folder}", len(mine)))
    if group.several and group.main:
        records = {**done, **read_metadata_parts(folder)}
        check_coverage(list(records), range(total), f"The metadata parts of {folder}", "images")
        write_metadata(folder, records)
        remove_metadata_parts(folder)
    return SampleResult(str(folder), total, generated, total - generated, s.nfe, asdict(s))
