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
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dicecli import faults
from dicecli.data import ImageDataset, TrainingData
from dicecli.enhancer import Enhancer, load_enhancer, save_enhancer
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import FamilyAdapter, load_adapter
from dicecli.files import atomic_path, check_output, check_writable, exclusive_lock
from dicecli.method import TrainingBatch, apply_enhancer, dice_loss
from dicecli.refs import ModelRef
from dicecli.runtime import Runtime
from dicecli.settings import DistillConfig, SampleConfig

CHECKPOINTS_KEPT = 2


def load_negative_corpus(spec: str) -> tuple[list[str], str]:
    """(prompts, name for the metadata) of --negative-prompts builtin|none|FILE."""
    if spec == "none":
        return [], "null"
    if spec == "builtin":
        text = resources.files("dicecli.corpora").joinpath("negative_prompts.txt").read_text(encoding="utf-8")
        name = "builtin-v1"
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--negative-prompts {spec}: no such file; give builtin, none or a .txt file with one prompt per line.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--negative-prompts file {path} is not UTF-8 text; re-save it as UTF-8.") from None
        name = path.name
    prompts = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")))
    if not prompts:
        raise UsageError(f"--negative-prompts {spec} holds no prompts; add at least one per line.")
    return prompts, name


class SampleOrder:
    """The k-th training sample overall is perm_{k // N}[k % N], perm_e seeded by (seed, e)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._perms = size, seed, {}

    def indices(self, start: int, count: int) -> list[int]:
        out = []
        for k in range(start, start + count):
            epoch = k // self.size
            if epoch not in self._perms:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perms = {epoch: torch.randperm(self.size, generator=g).tolist()}
            out.append(self._perms[epoch][k % self.size])
        return out


def step_generator(device: torch.device, seed: int, step: int, micro: int) -> torch.Generator:
    """Randomness of one micro-batch over all processes: the same draws whatever the process count."""
    return torch.Generator(device).manual_seed((seed * 1_000_003 + step) * 131 + micro)


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
    """Owns the model, enhancer, optimizer and data of one `dice distill` run."""

    def __init__(self, adapter: FamilyAdapter, data: TrainingData, config: DistillConfig, *, work_dir: Path,
                 output: Path, model_name: str, accelerator=None, progress: bool = False):
        from accelerate import Accelerator

        self.adapter, self.data, self.config = adapter, data, config
        self.work_dir, self.output, self.model_name, self.progress = work_dir, output, model_name, progress
        self.accelerator = accelerator or Accelerator(cpu=adapter.device.type == "cpu", device_placement=False)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        config.check()
        self.micro_batch = config.micro_batch(self.world)
        self.main = self.accelerator.is_main_process

        needed = adapter.training_components(with_vae=data.latents is None)
        adapter.require(*needed)
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        self.noise_scheduler = DDPMScheduler.from_config(adapter.scheduler.config)
        self.negatives_text, self.negatives_name = load_negative_corpus(config.negative_prompts)
        # Row 0 is the null prompt; rows 1.. the negative corpus.
        self.negative_bank = adapter.encode_all([""] + self.negatives_text).to(adapter.device)
        self.validation_inputs = None
        self._reader = None  # the thread that reads cached caption embeddings ahead of the GPU
        self.text = adapter.text  # the text encoders' shape, which the enhancer and its metadata take
        # Captions are fixed: a latent cache with this text encoder's caption embeddings spares encoding them at
        # every step (17 % of a PixArt step, with T5-XXL held in memory); the text encoders are then freed.
        fingerprint = adapter.text_encoder_fingerprint()  # kept for the enhancer's metadata
        self.caption_cache = data.caption_embeddings() if data.text_fingerprint == fingerprint else None
        if self.caption_cache is not None:
            if config.validate:
                self.validation_inputs = self.validation_conditioning()
            adapter.components.release(*(n for n in adapter.text_components if "text_encoder" in n))

        torch.manual_seed(config.seed)
        self.enhancer = Enhancer.for_text(self.text).to(adapter.device)
        self.optimizer = torch.optim.AdamW(self.enhancer.parameters(), lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay, eps=config.eps)
        # An average of the weights over the last ~1/(1 - decay) steps: the enhancer written out when --ema is on.
        self.ema = EMAModel(self.enhancer.parameters(), decay=config.ema) if config.ema else None
        self.order = SampleOrder(len(data), config.seed)
        self.step = 0
        if config.compile:
            adapter.compile_denoiser()
        frozen = [p for n in needed if isinstance(adapter.components[n], torch.nn.Module) for p in adapter.components[n].parameters()]
        assert not any(p.requires_grad for p in frozen), "the diffusion model must stay frozen"
        assert all(p.requires_grad for p in self.enhancer.parameters())

    # -- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def metadata(self, averaged: bool = False) -> dict:
        """What an enhancer file records; `weights` says whether it holds the trained weights or their --ema average."""
        return {
            "family": self.adapter.family, "tokens": self.text.tokens, "trained_on": self.model_name,
            "text_encoder_fingerprint": self.adapter.text_encoder_fingerprint(),
            **self.config.marked("record"), "negative_prompts": self.negatives_name, "steps": self.step,
            "weights": "ema average" if averaged else "trained",
        }

    def finished_enhancer(self) -> Enhancer:
        """The enhancer to write: the trained weights, or their moving average under --ema."""
        if self.ema is None:
            return self.enhancer
        averaged = copy.deepcopy(self.enhancer)
        self.ema.copy_to(averaged.parameters())
        return averaged

    def lr_scheduler(self, optimizer):
        """diffusers' schedules, positioned at the current step (so a resumed run continues the curve)."""
        from diffusers.optimization import get_scheduler

        c = self.config
        name = "constant_with_warmup" if c.lr_schedule == "constant" and c.warmup_steps else c.lr_schedule
        for group in optimizer.param_groups:
            group["initial_lr"] = c.lr
        return get_scheduler(name, optimizer, num_warmup_steps=c.warmup_steps, num_training_steps=c.steps,
                             last_epoch=self.step - 1)

    def save_checkpoint(self) -> Path:
        final = self.checkpoint_dir / f"step-{self.step:07d}"
        staging = self.checkpoint_dir / f".step-{self.step:07d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_enhancer(self.enhancer, staging / "enhancer.safetensors", **self.metadata())
        if self.ema is not None:  # the average too, usable as it stands if the run is never finished
            save_enhancer(self.finished_enhancer(), staging / "enhancer-ema.safetensors", **self.metadata(averaged=True))
        state = self.optimizer.state_dict()
        tensors = {f"state.{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
        tensors["rng.torch"] = torch.get_rng_state()
        if self.ema is not None:
            tensors |= {f"ema.{i}": p for i, p in enumerate(self.ema.shadow_params)}
            tensors["ema.optimization_step"] = torch.tensor(self.ema.optimization_step)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / "optimizer.safetensors"))
        trainer = {"step": self.step, "samples_seen": self.step * self.config.batch_size,
                   "config": self.config.as_dict(), "model": self.model_name, "data": self.data.source}
        (staging / "trainer.json").write_text(json.dumps(trainer, indent=2))
        faults.point(f"write:{final.name}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in sorted(self.checkpoint_dir.glob("step-*"))[:-CHECKPOINTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        done = sorted(p for p in self.checkpoint_dir.glob("step-*") if (p / "trainer.json").is_file())
        return done[-1] if done else None

    def resume(self) -> int:
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return 0
        trainer = json.loads((checkpoint / "trainer.json").read_text())
        saved = trainer["config"]
        for key, mine in self.config.marked("resume").items():
            default = DistillConfig.default(key)  # checkpoints of earlier versions lack the newer settings
            if saved.get(key, default) != (list(mine) if isinstance(mine, tuple) else mine):
                raise UsageError(
                    f"--resume: the checkpoint in {self.work_dir} was made with {key}={saved.get(key, default)!r}, not "
                    f"{mine!r}; resume with the same settings or use another --work-dir."
                )
        if trainer["model"] != self.model_name:
            raise UsageError(f"--resume: {self.work_dir} holds a run of {trainer['model']}, not {self.model_name}; use another --work-dir.")
        if trainer.get("data", self.data.source) != self.data.source:
            raise UsageError(f"--resume: {self.work_dir} holds a run on --data {trainer['data']}, not {self.data.source}; "
                             "resume with the same data or use another --work-dir.")
        enhancer, _ = load_enhancer(checkpoint / "enhancer.safetensors", self.adapter.device)
        self.enhancer.load_state_dict(enhancer.state_dict())
        tensors = load_file(str(checkpoint / "optimizer.safetensors"))
        state = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("state."):
                _, index, name = key.split(".", 2)
                state["state"].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(state)
        torch.set_rng_state(tensors["rng.torch"])
        if self.ema is not None:
            for i, p in enumerate(self.ema.shadow_params):
                p.copy_(tensors[f"ema.{i}"])
            self.ema.optimization_step = int(tensors["ema.optimization_step"])
        self.step = trainer["step"]
        return self.step

    # -- training -----------------------------------------------------------------------
    def batch(self, step: int, micro: int):
        """This process's share of a micro-batch (latents, conditioning, negative conditioning, t, noise).

        Draws are made for the whole micro-batch of all processes, then sliced, so that N processes
        train exactly like one process with the same total batch.
        """
        c, adapter = self.config, self.adapter
        size, mine = self.micro_batch * self.world, slice(self.rank * self.micro_batch, (self.rank + 1) * self.micro_batch)
        indices = self.indices(step, micro)
        if self.data.latents is not None:
            latents = self.data.latents[indices].to(adapter.device, torch.float32)
        else:
            latents = self.encode_images(indices)
        generator = step_generator(adapter.device, c.seed, step, micro)
        use_null = torch.rand(size, generator=generator, device=adapter.device)[mine] < c.null_share
        pick = torch.randint(1, max(2, len(self.negative_bank)), (size,), generator=generator, device=adapter.device)[mine]
        if len(self.negatives_text) == 0:
            use_null[:] = True
        t = self.timesteps(size, generator)[mine]
        noise = torch.randn((size, *latents.shape[1:]), generator=generator, device=adapter.device)[mine]
        if self.caption_cache is not None:
            cond = self.cached_captions(step, micro, indices).to(adapter.device, adapter.dtype)
        else:
            cond = adapter.encode([self.data.captions[i] for i in indices]).conditioning.to(adapter.device)
        negative = self.negative_bank[torch.where(use_null, torch.zeros_like(pick), pick).cpu()]
        return TrainingBatch(latents, cond, negative, t, noise)

    def cached_captions(self, step: int, micro: int, indices: list[int]):
        """This micro-batch's caption embeddings from the latent cache, read on a thread while the GPU works on the
        previous one; the next micro-batch's read starts now."""
        from concurrent.futures import ThreadPoolExecutor

        if self._reader is None:
            self._reader, self._ahead = ThreadPoolExecutor(max_workers=1), {}
        ahead = self._ahead.pop((step, micro), None)
        rows = ahead.result() if ahead is not None else self.caption_cache.conditioning(indices)
        following = (step, micro + 1) if micro + 1 < self.config.grad_accum else (step + 1, 0)
        if following[0] < self.config.steps:
            self._ahead = {following: self._reader.submit(self.caption_cache.conditioning, self.indices(*following))}
        return rows

    def indices(self, step: int, micro: int) -> list[int]:
        """The data rows of this process's share of a micro-batch."""
        size = self.micro_batch * self.world
        start = step * self.config.batch_size + micro * size
        return self.order.indices(start, size)[self.rank * self.micro_batch : (self.rank + 1) * self.micro_batch]

    def timesteps(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """t ~ U{0..T-1} (the paper), or logit-normal: sigmoid(N(0, 1)) * T, denser at mid-range t (SD3's choice)."""
        steps, device = self.noise_scheduler.config.num_train_timesteps, self.adapter.device
        if self.config.timesteps == "uniform":
            return torch.randint(0, steps, (size,), generator=generator, device=device)
        u = torch.sigmoid(torch.randn(size, generator=generator, device=device))
        return (u * steps).long().clamp_(0, steps - 1)

    def encode_images(self, indices: list[int]) -> torch.Tensor:
        dataset = ImageDataset(self.data, self.config.resolution)
        return self.adapter.images_to_latents(torch.stack([dataset[i][0] for i in indices]))

    def autocast(self):
        if self.adapter.device.type == "cuda" and self.adapter.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.adapter.dtype)
        return contextlib.nullcontext()

    def train_step(self, enhancer) -> float:
        c = self.config
        total = 0.0
        for micro in range(c.grad_accum):
            batch = self.batch(self.step, micro)
            sync = contextlib.nullcontext() if micro == c.grad_accum - 1 else self.accelerator.no_sync(enhancer)
            with sync, self.autocast():
                loss = dice_loss(self.adapter, enhancer, self.noise_scheduler, batch, c.guidance_scale, c.loss)
                self.accelerator.backward(loss / c.grad_accum)
            total += self.accelerator.reduce(loss.detach(), "mean").item() / c.grad_accum
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.enhancer.parameters())
        self.step += 1
        return total

    def run(self, resume: bool = False) -> DistillResult:
        """Train to `steps`; two runs in one work dir cannot interleave (the second refuses)."""
        with exclusive_lock(self.work_dir, "Work dir", wait=False) if self.main else contextlib.nullcontext():
            return self._run(resume)

    def _run(self, resume: bool) -> DistillResult:
        c = self.config
        resumed_from = self.resume() if resume else 0
        if self.step == c.steps and not self.output.exists():
            # Killed after its last checkpoint but before writing -o: the checkpoint is the finished enhancer.
            if self.main:
                save_enhancer(self.finished_enhancer(), self.output, **self.metadata(averaged=self.ema is not None))
            return DistillResult(str(self.output), str(self.work_dir), self.step, resumed_from, None, None, self.main, [])
        if self.step >= c.steps:
            raise UsageError(f"--resume: {self.work_dir} already holds step {self.step}; raise --steps above it to train more.")
        self.scheduler = self.lr_scheduler(self.optimizer)
        enhancer, self.optimizer = self.accelerator.prepare(self.enhancer, self.optimizer)
        if enhancer is not self.enhancer:  # DistributedDataParallel: it must be called (gradients are synced in its
            enhancer.enhanced_mask = self.enhancer.enhanced_mask  # forward), so it answers what apply_enhancer reads
        enhancer.train()
        log_path = self.work_dir / "train_log.jsonl"
        if self.main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            _truncate_log(log_path, self.step)  # drop steps logged after the checkpoint we resume from
        history, loss, speed = [], None, None
        bar = tqdm(total=c.steps, initial=self.step, unit="step", desc="distill", disable=not (self.progress and self.main))
        window_start, window_steps = time.perf_counter(), 0
        while self.step < c.steps:
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            loss = self.train_step(enhancer)
            window_steps += 1
            elapsed = time.perf_counter() - window_start
            speed = window_steps * c.batch_size / elapsed if elapsed > 0 else None
            record = {"step": self.step, "loss": loss, "lr": lr, "images_per_s": speed, "time": time.time()}
            if self.adapter.device.type == "cuda":
                record["max_memory_gb"] = torch.cuda.max_memory_allocated(self.adapter.device) / 2**30
            history.append(record)
            faults.point("distill.step")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{speed:.1f}" if speed else "-")
            if self.main:
                with open(log_path, "a") as log:
                    log.write(json.dumps(record) + "\n")
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    checkpoint = self.save_checkpoint()
                    if c.validate:
                        self.validation_grid(checkpoint / "validation.png")
                    window_start, window_steps = time.perf_counter(), 0
            self.accelerator.wait_for_everyone()
        bar.close()
        if self.main:
            save_enhancer(self.finished_enhancer(), self.output, **self.metadata(averaged=self.ema is not None))
        return DistillResult(str(self.output), str(self.work_dir), self.step, resumed_from, loss, speed, self.main, history)

    def validation_conditioning(self, count: int = 4):
        """The validation grid's prompts (the first distinct captions) encoded, and CFG's negative branch."""
        prompts = list(dict.fromkeys(self.data.captions[i] for i in range(min(len(self.data), 64))))[:count]
        return self.adapter.encode(prompts).conditioning.to(self.adapter.device), self.adapter.unconditional(None)

    @torch.no_grad()
    def validation_grid(self, path: Path, count: int = 4) -> None:
        """Fixed prompts (the first captions) and seeds; columns unguided | CFG | DICE."""
        from dicecli.sampling import generate, image_grid

        adapter, c = self.adapter, self.config
        adapter.require("vae")
        cond, unconditional = self.validation_inputs or self.validation_conditioning(count)
        null = self.negative_bank[[0]]
        enhanced = apply_enhancer(self.finished_enhancer(), cond, null)
        seeds = list(range(len(cond)))
        resolution = self.data.resolution or c.resolution  # a latent cache's own size, else the training size
        how = SampleConfig(steps=c.validation_steps, height=resolution, width=resolution)
        columns = [generate(adapter, cond, None, how, seeds),
                   generate(adapter, cond, unconditional, replace(how, cfg=c.guidance_scale), seeds),
                   generate(adapter, enhanced, None, how, seeds)]
        grid = image_grid([list(row) for row in zip(*columns)], ["unguided", f"CFG w={c.guidance_scale:g}", "DICE"])
        with atomic_path(path) as tmp:
            grid.save(tmp, format="PNG")


def _truncate_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


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

    if not resume and (work_dir / "checkpoints").is_dir() and any((work_dir / "checkpoints").glob("step-*")):
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
