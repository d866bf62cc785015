"""The DICE method: the CFG target, the enhanced embedding, the loss, and the guidance error.

    eps_cfg = eps(x_t, t, c_neg) + w * (eps(x_t, t, c) - eps(x_t, t, c_neg))
    c'      = c + alpha * E(c, c_neg)            (first token kept where the family has one)
    loss    = |eps(x_t, t, c + E(c, c_neg)) - stopgrad(eps_cfg)|   (l1; l2: squared)

`apply_enhancer` is the only place an enhancer is called, for every command and script.
CFG is applied to whatever the model predicts (epsilon or v), so the prediction type is
respected without a branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dicecli.enhancer import Enhancer
from dicecli.families import Conditioning, FamilyAdapter
from dicecli.settings import ENHANCED_PARTS as PARTS  # all, semantic, padding (`Conditioning.semantic_positions`)


def apply_enhancer(enhancer: Enhancer, cond: Conditioning, negative: Conditioning, alpha: float = 1.0,
                   part: str = "all") -> Conditioning:
    """c' = c + alpha * E(c, c_neg) for every row of `cond`; `negative` is one row or one per row.

    Only the token sequence changes, and pooled embeddings stay the prompt's own. An attention mask
    stays the prompt's own too, unless the enhancer widens it to every token (`enhanced_mask="all"`),
    so that what it writes into the padding tokens reaches the denoiser.

    `part` other than "all" replaces only that part of c by c''s, the rest staying c's own; semantic-only
    keeps the prompt's mask (its padding is the prompt's own, so there is nothing new there to show).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    embeds = enhancer(cond.prompt_embeds, negative.prompt_embeds, alpha, negative.attention_mask)
    if part != "all":
        keep = cond.semantic_positions() if part == "semantic" else ~cond.semantic_positions()
        embeds = torch.where(keep[..., None].to(embeds.device), embeds, cond.prompt_embeds)
    enhanced = cond.with_embeds(embeds)
    if enhancer.enhanced_mask == "all" and cond.attention_mask is not None and part != "semantic":
        enhanced.attention_mask = torch.ones_like(cond.attention_mask)
    return enhanced


def enhance_conditioning(enhancer: Enhancer, cond: Conditioning, negative: Conditioning, alpha: float = 1.0,
                         part: str = "all", dtype: torch.dtype | None = None) -> Conditioning:
    """c' for sampling (`dice sample`, `dice transfer`, the Python API): `apply_enhancer` without gradients, refused in
    one sentence when it is not finite in `dtype`."""
    with torch.no_grad():
        return check_enhanced(apply_enhancer(enhancer, cond, negative, alpha, part), alpha, dtype)


def check_enhanced(enhanced: Conditioning, alpha: float, dtype: torch.dtype | None = None) -> Conditioning:
    """Enhanced embeddings that are not finite (in `dtype`, where they go next) would sample black images or
    write a NaN cache with exit 0: a strength far too large is refused in one sentence instead."""
    from dicecli.errors import UsageError

    embeds = enhanced.prompt_embeds if dtype is None else enhanced.prompt_embeds.to(dtype)
    # finite but so large that their squared norms overflow: every attention logit over them does too (NaN images)
    if not torch.isfinite(embeds).all() or not torch.isfinite(embeds.pow(2).sum(-1)).all():
        raise UsageError(f"--alpha {alpha:g} makes the enhanced embeddings overflow (NaN or infinite numbers); use a "
                         "smaller --alpha (1 is the enhancer as trained).")
    return enhanced


def cfg_combine(pred_cond: torch.Tensor, pred_neg: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    return pred_neg + guidance_scale * (pred_cond - pred_neg)


@torch.no_grad()
def cfg_target(adapter: FamilyAdapter, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
               negative: Conditioning, guidance_scale: float) -> torch.Tensor:
    """The teacher: the frozen model's CFG prediction, both branches in one batch, in float32."""
    both = adapter.denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), Conditioning.cat([cond, negative.repeat(len(cond))]))
    pred_cond, pred_neg = both.float().chunk(2)
    return cfg_combine(pred_cond, pred_neg, guidance_scale)


def student_loss(adapter: FamilyAdapter, x_t: torch.Tensor, t: torch.Tensor, enhanced: Conditioning,
                 target: torch.Tensor, loss: str) -> torch.Tensor:
    """|eps(x_t, t, c') - target| (l1) or its square (l2): one unguided evaluation against the CFG target."""
    pred = adapter.denoise(x_t, t, enhanced.to(dtype=adapter.dtype)).float()
    return F.l1_loss(pred, target) if loss == "l1" else F.mse_loss(pred, target)


@dataclass
class TrainingBatch:
    """One micro-batch of the DICE objective: clean latents x0, their captions' conditioning c, the negative
    conditioning c_neg (one row per image), the timesteps t and the noise."""

    latents: torch.Tensor
    cond: Conditioning
    negative: Conditioning
    t: torch.Tensor
    noise: torch.Tensor


def dice_loss(adapter: FamilyAdapter, enhancer: Enhancer, noise_scheduler, batch: TrainingBatch, guidance_scale: float,
              loss: str) -> torch.Tensor:
    """The DICE objective on one batch of latents; gradients reach only the enhancer (plain or under DDP: the
    enhancer is only ever called, through `apply_enhancer`)."""
    x_t = noise_scheduler.add_noise(batch.latents, batch.noise, batch.t).to(adapter.dtype)
    target = cfg_target(adapter, x_t, batch.t, batch.cond, batch.negative, guidance_scale)
    return student_loss(adapter, x_t, batch.t, apply_enhancer(enhancer, batch.cond, batch.negative), target, loss)


@torch.no_grad()
def guidance_error(adapter: FamilyAdapter, enhancer: Enhancer, latents: torch.Tensor, cond: Conditioning,
                   negative: Conditioning, guidance_scale: float, seed: int = 0) -> tuple[float, float]:
    """Mean |eps(x_t, c) - eps_cfg| and |eps(x_t, c') - eps_cfg| on random (x_t, t): how much CFG the
    enhancer recovers (the first is the unguided model's error, the second DICE's)."""
    enhanced = apply_enhancer(enhancer, cond, negative.repeat(len(cond)))
    return conditioning_guidance_error(adapter, latents, cond, enhanced, negative, guidance_scale, seed)


@torch.no_grad()
def conditioning_guidance_error(adapter: FamilyAdapter, latents: torch.Tensor, cond: Conditioning, enhanced: Conditioning,
                                negative: Conditioning, guidance_scale: float, seed: int = 0) -> tuple[float, float]:
    """`guidance_error` for any replacement conditioning (e.g. a free per-prompt embedding: an oracle)."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(adapter.scheduler.config)
    generator = torch.Generator(adapter.device).manual_seed(seed)
    b = latents.shape[0]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=adapter.device)
    noise = torch.randn(latents.shape, generator=generator, device=adapter.device)
    x_t = scheduler.add_noise(latents.to(adapter.device), noise, t).to(adapter.dtype)
    negative = negative.repeat(b)
    eps_c = adapter.denoise(x_t, t, cond).float()
    eps_neg = adapter.denoise(x_t, t, negative).float()
    target = cfg_combine(eps_c, eps_neg, guidance_scale)
    eps_e = adapter.denoise(x_t, t, enhanced.to(dtype=adapter.dtype)).float()
    return (eps_c - target).abs().mean().item(), (eps_e - target).abs().mean().item()
