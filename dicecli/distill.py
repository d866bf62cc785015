"""`dice distill`: train an enhancer so that unguided sampling with c' matches CFG.

The objective is `dicecli.method.dice_loss` (docs/architecture.md). Only the enhancer has trainable parameters;
gradients reach it through the frozen denoiser. Every random draw of a step comes from a generator seeded by
(seed, step, micro-batch) -- deliberately not by the rank: each process draws the whole micro-batch of all
processes and keeps its slice, so N processes train exactly as one -- and the data order is a per-epoch
permutation seeded by (seed, epoch), so a run resumed from a checkpoint continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dicecli import faults
from dicecli.cache import text_attrs
from dicecli.checkpoints import WorkDir, restore_training_state, training_state
from dicecli.data import TrainingData
from dicecli.enhancer import Enhancer, read_enhancer, save_enhancer
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import FamilyAdapter, load_adapter
from dicecli.files import check_output, check_writable, exclusive_lock
from dicecli.method import dice_loss
from dicecli.prompts import negative_corpus
from dicecli.refs import ModelRef
from dicecli.runtime import Runtime
from dicecli.settings import DistillConfig
from dicecli.trainbatches import Batches
from dicecli.validation import validation_grid, validation_prompts


@dataclass
class DistillResult:
    output: str
    work_dir: str
    steps: int
    resumed_from: int
    final_loss: float | None
    images_per_second: float | None
    main_process: bool = True
    log: list[dict] = field(default_factory=list, repr=False)


class Distiller:
    """One `dice distill` run: the frozen model, the enhancer, AdamW (and the --ema average), and the loop.
    Batches come from `trainbatches.Batches`, checkpoints go to `checkpoints.WorkDir`, validation grids are
    `validation.validation_grid`; the loss is `method.dice_loss`."""

    def __init__(self, adapter: FamilyAdapter, data: TrainingData, config: DistillConfig, *, work_dir: Path,
                 output: Path, model_name: str, accelerator=None, progress: bool = False):
        from accelerate import Accelerator
        from diffusers.training_utils import EMAModel

        config.check()
        self.adapter, self.data, self.config, self.output, self.model_name = adapter, data, config, output, model_name
        self.work, self.progress, self.step, self.lr_schedule = WorkDir(work_dir), progress, 0, None
        self.accelerator = accelerator or Accelerator(cpu=adapter.device.type == "cpu", device_placement=False)
        self.main = self.accelerator.is_main_process
        needed = adapter.training_components(with_vae=data.latents is None)
        adapter.require(*needed)
        self.negatives_text, self.negatives_name = negative_corpus(config.negative_prompts)
        negative_bank = adapter.encode_all([""] + self.negatives_text).to(adapter.device)  # row 0: the null prompt
        self.null = negative_bank[[0]]
        self.text = adapter.text  # the text encoders' shape, which the enhancer and its metadata take
        self.fingerprint = adapter.text_encoder_fingerprint()  # for the enhancer's metadata
        # Captions are fixed: a latent cache with this text encoder's caption embeddings spares encoding them at
        # every step (17 % of a PixArt step, with T5-XXL held in memory); the text encoders are then freed.
        same_text = data.text_fingerprint == self.fingerprint and data.text_clip_skip == adapter.clip_skip
        caption_cache = data.caption_embeddings() if same_text else None
        self.validation_inputs = None
        if caption_cache is not None:
            if config.validate:
                self.validation_inputs = validation_prompts(adapter, data.captions)
            adapter.components.release(*(n for n in adapter.text_components if "text_encoder" in n))
        self.batches = Batches(adapter, data, config, negative_bank, caption_cache, self.accelerator.num_processes,
                               self.accelerator.process_index)
        torch.manual_seed(config.seed)
        self.enhancer = Enhancer.for_text(self.text).to(adapter.device)
        self.optimizer = torch.optim.AdamW(self.enhancer.parameters(), lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay, eps=config.eps)
        # An average of the weights over the last ~1/(1 - decay) steps: the enhancer written out when --ema is on.
        self.ema = EMAModel(self.enhancer.parameters(), decay=config.ema) if config.ema else None
        if config.compile:
            adapter.compile_denoiser()
        frozen = [p for n in needed if isinstance(adapter.components[n], torch.nn.Module) for p in adapter.components[n].parameters()]
        assert not any(p.requires_grad for p in frozen), "the diffusion model must stay frozen"

    def metadata(self, averaged: bool = False) -> dict:
        """What an enhancer file records; `weights` says whether it holds the trained weights or their --ema average."""
        return {"family": self.adapter.family, "tokens": self.text.tokens, "trained_on": self.model_name,
                "text_encoder_fingerprint": self.fingerprint, **text_attrs(self.adapter),
                **self.config.marked("record"),
                "negative_prompts": self.negatives_name, "steps": self.step,
                "weights": "ema average" if averaged else "trained"}

    def finished_enhancer(self) -> Enhancer:
        """The enhancer to write: the trained weights, or their moving average under --ema."""
        if self.ema is None:
            return self.enhancer
        averaged = copy.deepcopy(self.enhancer)
        self.ema.copy_to(averaged.parameters())
        return averaged

    def write_enhancer(self) -> None:
        if self.main:  # -o: the trained weights, or their --ema average
            save_enhancer(self.finished_enhancer(), self.output, **self.metadata(averaged=self.ema is not None))

    def save_checkpoint(self) -> Path:
        enhancers = {"enhancer.safetensors": (self.enhancer, self.metadata())}
        if self.ema is not None:  # the average too, usable as it stands if the run is never finished
            enhancers["enhancer-ema.safetensors"] = (self.finished_enhancer(), self.metadata(averaged=True))
        tensors = training_state(self.optimizer, self.ema)
        trainer = {"step": self.step, "samples_seen": self.step * self.config.batch_size, "config": self.config.as_dict(),
                   "model": self.model_name, "data": self.data.source, **text_attrs(self.adapter)}
        return self.work.save(self.step, enhancers, tensors, trainer, self.config.keep_checkpoints)

    def resume(self) -> int:
        checkpoint = self.work.latest()
        if checkpoint is None:
            return 0
        trainer, tensors = WorkDir.read(checkpoint)
        check_resumable(trainer, self.config, (self.model_name, self.adapter.clip_skip), self.data.source, self.work.path)
        self.enhancer.load_state_dict(read_enhancer(checkpoint / "enhancer.safetensors", self.adapter.device)[0].state_dict())
        restore_training_state(tensors, self.optimizer, self.ema)
        self.step = trainer["step"]
        return self.step

    def train_step(self, enhancer) -> float:
        c, total = self.config, 0.0
        for micro in range(c.grad_accum):
            batch = self.batches.draw(self.step, micro)
            sync = contextlib.nullcontext() if micro == c.grad_accum - 1 else self.accelerator.no_sync(enhancer)
            with sync, autocast(self.adapter):
                loss = dice_loss(self.adapter, enhancer, self.batches.noise_scheduler, batch, c.guidance_scale, c.loss)
                self.accelerator.backward(loss / c.grad_accum)
            total += self.accelerator.reduce(loss.detach(), "mean").item() / c.grad_accum
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.enhancer.parameters())
        self.step += 1
        return total

    def run(self, resume: bool = False) -> DistillResult:
        """Train to `steps`; two runs in one work dir cannot interleave (the second refuses)."""
        with exclusive_lock(self.work.path, "Work dir", wait=False) if self.main else contextlib.nullcontext():
            return self._run(resume)

    def _run(self, resume: bool) -> DistillResult:
        c = self.config
        resumed_from = self.resume() if resume else 0
        if self.step == c.steps and not self.output.exists():
            # Killed after its last checkpoint but before writing -o: the checkpoint is the finished enhancer.
            self.write_enhancer()
            return DistillResult(str(self.output), str(self.work.path), self.step, resumed_from, None, None, self.main, [])
        if self.step >= c.steps:
            raise UsageError(f"--resume: {self.work.path} already holds step {self.step}; raise --steps above it to train more.")
        self.lr_schedule = lr_scheduler(self.optimizer, c, self.step)
        enhancer, self.optimizer = self.accelerator.prepare(self.enhancer, self.optimizer)
        if enhancer is not self.enhancer:  # DistributedDataParallel: it must be called (gradients are synced in its
            enhancer.enhanced_mask = self.enhancer.enhanced_mask  # forward), so it answers what apply_enhancer reads
        enhancer.train()
        if self.main:
            self.work.start_log(self.step)
        history, loss, speed = [], None, None
        bar = tqdm(total=c.steps, initial=self.step, unit="step", desc="distill", disable=not (self.progress and self.main))
        window_start, window_steps = time.perf_counter(), 0
        while self.step < c.steps:
            lr = self.lr_schedule.get_last_lr()[0]  # the rate this step uses
            loss = self.train_step(enhancer)
            window_steps += 1
            elapsed = time.perf_counter() - window_start
            speed = window_steps * c.batch_size / elapsed if elapsed > 0 else None
            history.append(record := log_record(self.step, loss, lr, speed, self.adapter.device))
            faults.point("distill.step")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{speed:.1f}" if speed else "-")
            if self.main:
                self.work.append_log(record)
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    checkpoint = self.save_checkpoint()
                    if c.validate:
                        self.validation_inputs = self.validation_inputs or validation_prompts(self.adapter, self.data.captions)
                        validation_grid(self.adapter, self.finished_enhancer(), self.validation_inputs, self.null, c,
                                        self.data.resolution or c.resolution, checkpoint / "validation.png")
                    window_start, window_steps = time.perf_counter(), 0
            self.accelerator.wait_for_everyone()
        bar.close()
        self.write_enhancer()
        return DistillResult(str(self.output), str(self.work.path), self.step, resumed_from, loss, speed, self.main, history)


def log_record(step: int, loss: float, lr: float, speed: float | None, device: torch.device) -> dict:
    """A train_log.jsonl line: the step's loss, learning rate, throughput, time (and peak GPU memory)."""
    record = {"step": step, "loss": loss, "lr": lr, "images_per_s": speed, "time": time.time()}
    if device.type == "cuda":
        record["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return record


def check_resumable(trainer: dict, config: DistillConfig, model: tuple[str, int], data: str, work_dir: Path) -> None:
    """A checkpoint continues only the run it came from: the settings marked RESUME, the model (with its clip skip)
    and the data."""
    model, clip_skip = model
    if int(trainer.get("clip_skip", 1)) != clip_skip:
        raise UsageError(f"--resume: {work_dir} holds a run with clip skip {trainer.get('clip_skip', 1)}, not "
                         f"{clip_skip}; resume with --clip-skip {trainer.get('clip_skip', 1)} or use another --work-dir.")
    saved = trainer["config"]
    for key, mine in config.marked("resume").items():
        default = DistillConfig.default(key)  # checkpoints of earlier versions lack the newer settings
        if saved.get(key, default) != (list(mine) if isinstance(mine, tuple) else mine):
            raise UsageError(f"--resume: the checkpoint in {work_dir} was made with {key}={saved.get(key, default)!r}, "
                             f"not {mine!r}; resume with the same settings or use another --work-dir.")
    if trainer["model"] != model:
        raise UsageError(f"--resume: {work_dir} holds a run of {trainer['model']}, not {model}; use another --work-dir.")
    if trainer.get("data", data) != data:
        raise UsageError(f"--resume: {work_dir} holds a run on --data {trainer['data']}, not {data}; resume with the "
                         "same data or use another --work-dir.")


def lr_scheduler(optimizer, config: DistillConfig, step: int):
    """diffusers' schedules, positioned at `step` (so a resumed run continues the curve)."""
    from diffusers.optimization import get_scheduler

    name = "constant_with_warmup" if config.lr_schedule == "constant" and config.warmup_steps else config.lr_schedule
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps,
                         last_epoch=step - 1)


def autocast(adapter: FamilyAdapter):
    if adapter.device.type == "cuda" and adapter.dtype != torch.float32:
        return torch.autocast("cuda", dtype=adapter.dtype)
    return contextlib.nullcontext()


def default_paths(ref: ModelRef, work_dir: str | None, output: str | None) -> tuple[Path, Path]:
    """Work dir `dice-runs/NAME/` and, beside it, the enhancer `dice-runs/NAME.safetensors`."""
    name = Path(ref.name.rstrip("/")).stem.replace("/", "--") or "model"
    work = Path(work_dir) if work_dir else Path("dice-runs") / name
    out = Path(output) if output else work.parent / f"{work.name}.safetensors"
    return work, out


def distill(ref: ModelRef, data: TrainingData, config: DistillConfig, work_dir: Path, output: Path, runtime: Runtime,
            resume: bool = False, allow_other_vae: bool = False) -> DistillResult:
    from accelerate import Accelerator

    device, dtype, progress = runtime.device, runtime.dtype, runtime.progress

    if not resume and WorkDir(work_dir).has_checkpoints():
        raise UsageError(
            f"Work dir {work_dir} holds checkpoints of an earlier run; pass --resume to continue it, "
            "or choose another --work-dir."
        )
    check_writable(output)
    named = [data.source, ref.vae, config.negative_prompts if config.negative_prompts not in ("builtin", "none") else None]
    inputs = [Path(p) for p in named if p and Path(p).exists()]
    inputs += [ref.source.local_path] if ref.source.local_path else []
    check_output(output, inputs)
    check_output(work_dir, inputs, "--work-dir", folder=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=device.type == "cpu", device_placement=False)
    if accelerator.num_processes > 1 or accelerator.device.type == "cuda" and device.type == "cuda":
        device = accelerator.device  # one GPU per process under `accelerate launch` / torchrun
    from dicecli.runtime import check_fits

    size = data.resolution or config.resolution  # images are encoded at it, and the validation grid drawn
    check_fits(size, size, device, dtype, f"--resolution {size}" if data.resolution is None else f"The latent cache's {size} px")
    adapter = load_adapter(ref, device, dtype)
    if data.latents is not None and data.latents.shape[1] != adapter.latent_channels:
        raise UsageError(f"Latent cache {data.source} holds {data.latents.shape[1]}-channel latents, not this model's; rebuild it with `dice encode --images`.")
    if data.vae_fingerprint is not None and not allow_other_vae and data.vae_fingerprint != adapter.vae_fingerprint():
        raise IncompatibleError(
            f"Latent cache {data.source} was made with another VAE than {ref.given}'s, so its latents are in another "
            "space; rebuild it with `dice encode --images --model MODEL`, or pass --allow-other-vae if the VAEs are "
            "known to share one."
        )
    trainer = Distiller(adapter, data, config, work_dir=work_dir, output=output, model_name=ref.given,
                        accelerator=accelerator, progress=progress)
    return trainer.run(resume=resume)
