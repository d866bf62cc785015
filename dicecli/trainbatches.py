"""What `dice distill` trains on, micro-batch by micro-batch: latents, caption and negative conditioning, timesteps
and noise (`method.TrainingBatch`).

Every draw of a micro-batch comes from a generator seeded by (seed, step, micro-batch) -- deliberately not by the
rank: each process draws the whole micro-batch of all processes and keeps its slice, so N processes train exactly
as one -- and the data order is a per-epoch permutation seeded by (seed, epoch), so a resumed run continues exactly.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from dicecli.data import ImageDataset, TrainingData
from dicecli.families import Conditioning, FamilyAdapter
from dicecli.method import TrainingBatch
from dicecli.settings import DistillConfig


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


class Batches:
    """This process's share of each micro-batch. `negative_bank` row 0 is the null prompt, rows 1.. the negative
    corpus; `caption_cache` (a latent cache's caption embeddings, when they are this text encoder's) spares
    encoding the captions, and its rows are read on a thread while the GPU works on the previous micro-batch."""

    def __init__(self, adapter: FamilyAdapter, data: TrainingData, config: DistillConfig, negative_bank: Conditioning,
                 caption_cache, world: int, rank: int):
        from diffusers import DDPMScheduler

        self.adapter, self.data, self.config = adapter, data, config
        self.negative_bank, self.caption_cache = negative_bank, caption_cache
        self.world, self.rank, self.micro_batch = world, rank, config.micro_batch(world)
        self.noise_scheduler = DDPMScheduler.from_config(adapter.scheduler.config)
        self.order = SampleOrder(len(data), config.seed)
        self.reader = ThreadPoolExecutor(max_workers=1) if caption_cache is not None else None
        self.ahead: dict[tuple[int, int], Future] = {}

    def draw(self, step: int, micro: int) -> TrainingBatch:
        c, adapter = self.config, self.adapter
        size, mine = self.micro_batch * self.world, slice(self.rank * self.micro_batch, (self.rank + 1) * self.micro_batch)
        indices = self.indices(step, micro)
        if self.data.latents is not None:
            latents = self.data.latents[indices].to(adapter.device, torch.float32)
        else:
            dataset = ImageDataset(self.data, c.resolution)
            latents = adapter.images_to_latents(torch.stack([dataset[i][0] for i in indices]))
        generator = step_generator(adapter.device, c.seed, step, micro)
        use_null = torch.rand(size, generator=generator, device=adapter.device)[mine] < c.null_share
        pick = torch.randint(1, max(2, len(self.negative_bank)), (size,), generator=generator, device=adapter.device)[mine]
        if len(self.negative_bank) == 1:  # no negative corpus: the null prompt only
            use_null[:] = True
        t = self.timesteps(size, generator)[mine]
        noise = torch.randn((size, *latents.shape[1:]), generator=generator, device=adapter.device)[mine]
        if self.caption_cache is not None:
            cond = self.cached_captions(step, micro, indices).to(adapter.device, adapter.dtype)
        else:
            cond = adapter.encode([self.data.captions[i] for i in indices]).conditioning.to(adapter.device)
        negative = self.negative_bank[torch.where(use_null, torch.zeros_like(pick), pick).cpu()]
        return TrainingBatch(latents, cond, negative, t, noise)

    def cached_captions(self, step: int, micro: int, indices: list[int]) -> Conditioning:
        """This micro-batch's caption embeddings; the next micro-batch's read starts now."""
        ahead = self.ahead.pop((step, micro), None)
        rows = ahead.result() if ahead is not None else self.caption_cache.conditioning(indices)
        following = (step, micro + 1) if micro + 1 < self.config.grad_accum else (step + 1, 0)
        if following[0] < self.config.steps:
            self.ahead = {following: self.reader.submit(self.caption_cache.conditioning, self.indices(*following))}
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
