"""Sampling from embeddings with diffusers pipelines and schedulers (never a hand-written sampler),
and the sample folder format (README, `dice sample`): NNNNNN.png with PNG text chunks, metadata.jsonl, dice-sample.json."""

from __future__ import annotations

import json
import math
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from tqdm.auto import tqdm

from dicecli import faults
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import Conditioning, FamilyAdapter
from dicecli.files import atomic_path, exclusive_lock, remove_stale_temporaries

# name -> (diffusers scheduler class name, extra config); built from the model's own scheduler config
SCHEDULERS = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(name: str, config):
    import diffusers

    if name not in SCHEDULERS:
        raise UsageError(f"--scheduler {name!r} is not known; choose one of {', '.join(SCHEDULERS)}.")
    class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


def check_numbers(*, cfg: float, alpha: float | None, height: int | None, width: int | None, steps: int | None,
                  num_per_prompt: int = 1) -> None:
    """Sampling numbers that diffusers would accept silently or fail on with a library error."""
    if not math.isfinite(cfg) or cfg < 1:
        raise UsageError(f"--cfg {cfg} must be a number of at least 1 (1 = unguided, one model evaluation per step).")
    if alpha is not None and not math.isfinite(alpha):
        raise UsageError(f"--alpha {alpha} must be a finite number (1 = the enhancer as trained).")
    for option, value in (("--height", height), ("--width", width)):
        if value is not None and (value < 8 or value % 8):
            raise UsageError(f"{option} {value} must be a positive multiple of 8 (e.g. 512).")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps {steps} must be at least 1.")
    if num_per_prompt < 1:
        raise UsageError("--num-per-prompt must be at least 1.")


@torch.no_grad()
def generate(adapter: FamilyAdapter, cond: Conditioning, negative: Conditioning | None, *, cfg: float,
             steps: int, scheduler: str, seeds: list[int], height: int, width: int, pipe=None) -> list[Image.Image]:
    """One image per row of `cond`, image i from seed seeds[i]; cfg <= 1 means one evaluation per step.

    `negative` is the CFG negative branch (one row, or one per row), used only when cfg > 1.

    `pipe` (from adapter.pipeline()) may be passed to reuse it across calls; it always samples
    with `scheduler`, whatever scheduler it held before.
    """
    pipe = pipe or adapter.pipeline()
    pipe.scheduler = make_scheduler(scheduler, adapter.scheduler.config)
    negative = negative.repeat(len(cond)) if cfg > 1 else None
    generators = [torch.Generator(adapter.device).manual_seed(s) for s in seeds]
    images = pipe(
        **adapter.pipeline_inputs(cond, negative), guidance_scale=cfg,
        num_inference_steps=steps, height=height, width=width, generator=generators, output_type="pt",
    ).images
    return to_pil(images)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[N, 3, H, W] in [0, 1] -> PIL images, rounded exactly as diffusers' "pil" output but on the
    images' device, so only uint8 pixels cross to the CPU (a tenth of a second per batch at 1024 px)."""
    pixels = (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


def image_grid(rows: list[list[Image.Image]], column_titles: list[str] | None = None) -> Image.Image:
    """Paste images into a grid, with an optional title strip above the columns."""
    w, h = rows[0][0].size
    strip = 14 if column_titles else 0
    grid = Image.new("RGB", (w * len(rows[0]), h * len(rows) + strip), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(column_titles or []):
        draw.text((j * w + 2, 1), title, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image, (j * w, strip + i * h))
    return grid


# -- sample folders (README, `dice sample`) ---------------------------------------------

SETTINGS_FILE = "dice-sample.json"
METADATA_FILE = "metadata.jsonl"


@dataclass
class SampleSettings:
    """Everything that determines the images of a sample folder; a folder holds one set of settings."""

    model: str
    family: str
    enhancer: str | None
    enhancer_sha256: str | None
    alpha: float | None
    cfg: float
    negative_prompt: str
    steps: int
    scheduler: str
    seed: int
    height: int
    width: int
    num_per_prompt: int

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per image (CFG doubles them)."""
        return self.steps * (2 if self.cfg > 1 else 1)

    @property
    def method(self) -> str:
        if self.enhancer:
            return "dice+cfg" if self.cfg > 1 else "dice"
        return "cfg" if self.cfg > 1 else "unguided"

    def default_folder(self) -> Path:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.model.rstrip("/")).name)
        alpha = f"-a{self.alpha:g}" if self.enhancer else ""
        return Path("samples") / f"{name}-{self.method}-cfg{self.cfg:g}{alpha}-s{self.steps}"


@dataclass
class SampleJob:
    adapter: FamilyAdapter
    prompts: list[str]
    cond: Conditioning  # one row per prompt, already enhanced when an enhancer is used
    negative: Conditioning  # the CFG negative branch [1, T, D], used when cfg > 1
    settings: SampleSettings


@dataclass
class SampleResult:
    output: str
    images: int
    generated: int
    skipped: int
    nfe_per_image: int
    settings: dict = field(repr=False, default_factory=dict)


def _png_info(record: dict) -> PngInfo:
    info = PngInfo()
    for key, value in record.items():
        if key != "file_name":
            info.add_text("prompt" if key == "text" else key, "" if value is None else str(value))
    # The A1111 "parameters" chunk, which SD tools and image viewers read.
    s = record
    extra = f", DICE enhancer: {s['enhancer']}, DICE alpha: {s['alpha']}" if s.get("enhancer") else ""
    info.add_text("parameters", f"{s['text']}\nNegative prompt: {s['negative_prompt']}\nSteps: {s['steps']}, "
                  f"Sampler: {s['scheduler']}, CFG scale: {s['cfg']}, Seed: {s['seed']}, "
                  f"Size: {s['width']}x{s['height']}, Model: {s['model']}{extra}")
    return info


def prepare_folder(folder: Path, settings: SampleSettings, prompts: list[str]) -> dict[int, dict]:
    """Create or re-open a sample folder; return the records of images already there."""
    settings_path = folder / SETTINGS_FILE
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"Output {folder} is a file; give a folder to -o.")
    if folder.is_dir():
        remove_stale_temporaries(folder, pattern="*")  # half-written files of a killed run
    if folder.is_dir() and any(folder.iterdir()) and not settings_path.exists():
        raise UsageError(f"Folder {folder} is not empty and is not a dice sample folder; choose another -o.")
    wanted = asdict(settings)
    if settings_path.exists() and not _holds_images(folder):
        settings_path.unlink()  # a run that failed before its first image: nothing to keep consistent with
    if settings_path.exists():
        saved = json.loads(settings_path.read_text())
        changed = [k for k in wanted if saved.get(k) != wanted[k]]
        if changed:
            raise IncompatibleError(
                f"Folder {folder} holds samples made with other settings ({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}); "
                "choose another -o or use the same settings."
            )
    folder.mkdir(parents=True, exist_ok=True)
    if not settings_path.exists():
        with atomic_path(settings_path) as tmp:
            tmp.write_text(json.dumps(wanted, indent=2))
    done: dict[int, dict] = {}
    metadata = folder / METADATA_FILE
    if metadata.exists():
        for line in metadata.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            index = int(Path(record["file_name"]).stem)
            expected = prompts[index // settings.num_per_prompt] if index // settings.num_per_prompt < len(prompts) else None
            if record["text"] != expected:
                raise IncompatibleError(
                    f"Folder {folder} holds image {record['file_name']} of prompt {record['text']!r}, but this prompt "
                    "list has another prompt there; choose another -o."
                )
            if (folder / record["file_name"]).is_file():
                done[index] = record
    return done


def _holds_images(folder: Path) -> bool:
    metadata = folder / METADATA_FILE
    return any(folder.glob("[0-9]*.png")) or (metadata.exists() and bool(metadata.read_text(encoding="utf-8").strip()))


def _save_png(image: Image.Image, path: Path, record: dict) -> None:
    with atomic_path(path, clean=False) as tmp:  # the folder's stale temporaries went at the start of the run
        # Lossless either way; level 3 keeps PNG encoding off the critical path at 512 px and above.
        image.save(tmp, format="PNG", pnginfo=_png_info(record), compress_level=3)


def run_job(job: SampleJob, folder: Path, batch_size: int, progress: bool = False) -> SampleResult:
    """Generate the missing images of `folder` (one run at a time). Image i uses seed + i and belongs to the fixed
    batch i // batch_size, so a resumed run makes exactly the images an uninterrupted one would.

    PNGs of batch k are encoded on worker threads while the GPU makes batch k+1; metadata.jsonl
    is rewritten only once a batch's files are all in place, so it never lists a missing image.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"Output {folder} is a file; give a folder to -o.")
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder, "Sample folder", wait=False):  # two runs into one folder: the second refuses
        return _run_job(job, folder, batch_size, progress)


def _run_job(job: SampleJob, folder: Path, batch_size: int, progress: bool) -> SampleResult:
    s = job.settings
    total = len(job.prompts) * s.num_per_prompt
    done = prepare_folder(folder, s, job.prompts)
    groups = [list(range(g, min(g + batch_size, total))) for g in range(0, total, batch_size)]
    todo = [g for g in groups if any(i not in done for i in g)]
    pipe = job.adapter.pipeline()
    generated = 0
    pending: list[tuple[Future, int, dict]] = []

    def settle() -> None:
        nonlocal generated
        for future, i, record in pending:
            future.result()
            done[i] = record
            generated += 1
            bar.update(1)
        if pending:
            with atomic_path(folder / METADATA_FILE) as tmp:
                tmp.write_text("".join(json.dumps(done[i]) + "\n" for i in sorted(done)), encoding="utf-8")
        pending.clear()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 4)) as writers, \
            tqdm(total=total, initial=len(done), unit="image", desc="sample", disable=not progress, leave=False) as bar:
        for group in todo:
            rows = [i // s.num_per_prompt for i in group]
            images = generate(job.adapter, job.cond[rows], job.negative, cfg=s.cfg, steps=s.steps, scheduler=s.scheduler,
                              seeds=[s.seed + i for i in group], height=s.height, width=s.width, pipe=pipe)
            settle()  # the previous batch's files, written while this batch was generated
            for i, image in zip(group, images):
                if i in done:
                    continue
                record = {"file_name": f"{i:06d}.png", "text": job.prompts[i // s.num_per_prompt],
                          "negative_prompt": s.negative_prompt, "seed": s.seed + i, "model": s.model,
                          "enhancer": s.enhancer, "alpha": s.alpha, "cfg": s.cfg, "steps": s.steps,
                          "scheduler": s.scheduler, "height": s.height, "width": s.width}
                pending.append((writers.submit(_save_png, image, folder / record["file_name"], record), i, record))
            faults.point("sample.batch")
        settle()
    return SampleResult(str(folder), total, generated, total - generated, s.nfe, asdict(s))
