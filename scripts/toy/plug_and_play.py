"""The Plug-and-Play (PnP) baseline of the paper's Section 4.2 and Appendix A.3, on the toy model (GPU; a toy-world
script, like guidance_distill.py).

    python scripts/toy/plug_and_play.py LATENT_CACHE OUT_DIR [--steps 3000] [--max-seconds 420]

Hsiao et al. (CVPR 2024) keep the diffusion model frozen and train an external guide model that injects into its
features, so that one evaluation of the two reproduces the teacher's CFG prediction. Their guide is built as
ControlNet is: a trainable copy of the UNet's encoder (down blocks and middle block), whose outputs enter the frozen
UNet's skip connections and middle block through zero-initialised convolutions, with the guidance scale w as an
input. That is what is built here, with diffusers' own `ControlNetModel.from_unet` (the ControlNet form, not the
PnP paper's pruned guide: at the toy model's size nothing needs pruning, and the full copy is the stronger of the
two). w enters as GD's does: sinusoidal features of W_INPUT_SCALE * w through a new MLP added to the timestep
embedding, its last layer at zero. There is no image condition: the control image is all zeros (its embedding is a
learnt constant). At the start the guide adds exactly zero, so training starts from the unguided teacher.
Same targets, loss (MSE in epsilon), w range, latents, batch size, learning rate and time budget as the GD run.

Writes OUT_DIR/guide (a diffusers ControlNetModel folder, fp16) and OUT_DIR/pnp.json (steps, train seconds,
trainable parameters); toy_report.py samples it with pnp_sampler() below.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guidance_distill import (W_INPUT_SCALE, W_MAX, W_MIN, cfg_batch, teacher_and_data,  # noqa: E402 - GD's input,
                              training_arguments)  # range, arguments, data and targets


def guide_from_unet(unet, vae_scale_factor: int):
    """A ControlNet copy of `unet`'s encoder with the guidance scale as a class embedding, adding zero at first.
    Its control-image embedding downsamples by the VAE's factor (the toy VAE's is 4), so the image has the
    pipeline's pixel size."""
    import math

    from diffusers import ControlNetModel

    widths = (16, 32, 96, 256)[: int(math.log2(vae_scale_factor)) + 1]
    copied = ControlNetModel.from_unet(unet, conditioning_channels=3, conditioning_embedding_out_channels=widths)
    guide = ControlNetModel.from_config({**copied.config, "class_embed_type": "timestep"})
    missing, unexpected = guide.load_state_dict(copied.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("class_embedding.") for k in missing), (missing, unexpected)
    torch.nn.init.zeros_(guide.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(guide.class_embedding.linear_2.bias)
    return guide


def residuals(guide, x_t, t, c, w):
    """The guide's additions to the frozen UNet's skip connections and middle block (the control image: zeros)."""
    scale = 2 ** (len(guide.config.conditioning_embedding_out_channels) - 1)
    image = torch.zeros(x_t.shape[0], 3, x_t.shape[2] * scale, x_t.shape[3] * scale, device=x_t.device, dtype=x_t.dtype)
    down, mid = guide(x_t, t, encoder_hidden_states=c, controlnet_cond=image, class_labels=W_INPUT_SCALE * w,
                      return_dict=False)
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


class PnPSampler:
    """What `dicecli.sampling.generate` calls as a pipeline: the toy pipeline with the guide at guidance scale w,
    sampled with cfg 1 (one evaluation of UNet + guide per step)."""

    def __init__(self, adapter, guide_dir: Path, w: float):
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

        guide = ControlNetModel.from_pretrained(guide_dir, dtype=adapter.dtype).to(adapter.device).eval()
        scale = torch.tensor(W_INPUT_SCALE * w)

        def with_w(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            kwargs["class_labels"] = scale.expand(sample.shape[0]).to(sample.device)
            return args, kwargs

        guide.register_forward_pre_hook(with_w, with_kwargs=True)
        # ControlNetModel feeds its class embedding the float32 sinusoids (UNet2DConditionModel casts them first)
        guide.class_embedding.register_forward_pre_hook(lambda module, args: (args[0].to(module.linear_1.weight.dtype),))
        self.pipe = StableDiffusionControlNetPipeline(**{**adapter.pipeline().components, "controlnet": guide})
        self.pipe.set_progress_bar_config(disable=True)

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @scheduler.setter
    def scheduler(self, value) -> None:
        self.pipe.scheduler = value

    def __call__(self, **kwargs):
        rows, height, width = len(kwargs["prompt_embeds"]), kwargs["height"], kwargs["width"]
        image = torch.zeros(rows, 3, height, width, device=self.pipe.device, dtype=self.pipe.dtype)
        return self.pipe(image=image, **kwargs)


def main() -> None:
    from diffusers import DDPMScheduler

    args = training_arguments("The Plug-and-Play baseline on the toy model.")
    teacher, latents, cond, null = teacher_and_data(args.latents)
    device = latents.device

    torch.manual_seed(args.seed)
    unet = teacher.unet.requires_grad_(False)
    guide = guide_from_unet(unet, teacher.vae_scale_factor).to(device).train().requires_grad_(True)
    trainable = sum(p.numel() for p in guide.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(guide.parameters(), lr=args.lr, weight_decay=1e-2)
    noise_scheduler = DDPMScheduler.from_config(teacher.scheduler.config)
    generator = torch.Generator(device).manual_seed(args.seed)
    log, start, step = [], time.time(), 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    while step < args.steps and time.time() - start < args.max_seconds:
        x_t, t, w, c, target = cfg_batch(teacher, latents, cond, null, noise_scheduler, generator, args.batch_size,
                                         autocast)
        with autocast:
            pred = unet(x_t, t, encoder_hidden_states=c.prompt_embeds, **residuals(guide, x_t, t, c.prompt_embeds, w)).sample
        loss = F.mse_loss(pred.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(guide.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "loss": loss.item(), "time": round(time.time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
    train_s = time.time() - start
    guide.eval().to(torch.float16).save_pretrained(args.out / "guide")
    report = {"steps": step, "batch_size": args.batch_size, "lr": args.lr, "train_s": round(train_s, 1),
              "trainable_parameters": trainable, "w_range": [W_MIN, W_MAX], "w_input_scale": W_INPUT_SCALE,
              "guide": "ControlNetModel.from_unet (encoder copy, zero-initialised connections), w as class embedding",
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "seed": args.seed, "log": log}
    (args.out / "pnp.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "log"}), flush=True)


if __name__ == "__main__":
    main()
