"""The guidance-distillation (GD) baseline of the paper's Table 1, on the toy model (GPU; a toy-world script).

    python scripts/toy/guidance_distill.py LATENT_CACHE OUT_DIR [--steps 3000] [--max-seconds S]

As the DICE reference code re-implements Meng et al.'s guidance distillation: the whole denoiser is
fine-tuned, starting from the frozen teacher, so that ONE evaluation reproduces the teacher's CFG
prediction eps(x_t, c_neg) + w (eps(x_t, c) - eps(x_t, c_neg)), with the guidance scale w as an
extra input. Here w enters as the UNet's class embedding (diffusers' class_embed_type="timestep":
sinusoidal features of W_INPUT_SCALE * w through a new MLP, added to the timestep embedding); its
last layer starts at zero, so training starts from the teacher exactly. w is drawn from
U[W_MIN, W_MAX] per sample, the null prompt is c_neg, t ~ U{0..999}, the loss is the MSE in
epsilon. Same latents and batch size as the toy DICE runs.

Writes OUT_DIR/unet (diffusers folder, fp16) and OUT_DIR/gd.json (steps, train seconds, trainable
parameters). It is not a `dice` subcommand: fine-tuning a whole SD UNet per model is a different
product from a 2 MB enhancer, so the CLI keeps to DICE; toy_report.py samples the GD model with
gd_pipeline() below.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

W_MIN, W_MAX = 1.0, 8.0
W_INPUT_SCALE = 100.0  # w in [1, 8] -> 100..800, the range the sinusoidal timestep features are made for


def with_guidance_input(unet, w: float):
    """Make every call of `unet` see guidance scale w (the pipeline itself passes no class labels)."""
    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        kwargs["class_labels"] = torch.full((sample.shape[0],), W_INPUT_SCALE * w, device=sample.device)
        return args, kwargs

    unet._gd_hook = unet.register_forward_pre_hook(hook, with_kwargs=True)
    return unet


def load_student(folder: Path, device, dtype):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, dtype=dtype).to(device).eval().requires_grad_(False)


def gd_pipeline(adapter, unet_dir: Path, w: float):
    """A copy of the toy pipeline whose UNet is the GD student at guidance scale w (sample it with cfg=1)."""
    pipe = adapter.pipeline()
    student = with_guidance_input(load_student(unet_dir, adapter.device, adapter.dtype), w)
    return type(pipe)(**{**pipe.components, "unet": student})


def training_arguments(description: str) -> argparse.Namespace:
    """The command line GD and PnP (plug_and_play.py) share: the same cache, budget and optimiser settings."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("latents", help="latent cache of the toy world (dice encode --images toy:20000)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-seconds", type=float, default=float("inf"), help="stop training early")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def teacher_and_data(latents_path: str):
    """The frozen toy teacher, the cache's latents and caption conditioning on the device, and the null prompt's."""
    from dicecli.data import open_training_data
    from dicecli.families import Conditioning, load_adapter
    from dicecli.refs import resolve_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_adapter(resolve_model("toy"), device, torch.float32)
    teacher.require("unet", "text_encoder", "tokenizer")
    data = open_training_data(latents_path)
    latents = data.latents[:].to(device, torch.float32)
    cond = Conditioning.cat([teacher.encode(list(data.captions[s : s + 2048])).conditioning
                             for s in range(0, len(data), 2048)]).to(device)
    return teacher, latents, cond, teacher.encode([""]).conditioning.to(device)


def cfg_batch(teacher, latents, cond, null, noise_scheduler, generator, batch_size: int, autocast):
    """One batch under CFG supervision: noisy latents x_t, timesteps t, guidance scales w ~ U[W_MIN, W_MAX], the
    captions' conditioning c, and the teacher's guided prediction eps(x_t, c_neg) + w (eps(x_t, c) - eps(x_t, c_neg))."""
    from dicecli.families import Conditioning
    from dicecli.method import cfg_combine

    device = latents.device
    pick = torch.randint(0, len(latents), (batch_size,), generator=generator, device=device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator, device=device)
    w = W_MIN + (W_MAX - W_MIN) * torch.rand(batch_size, generator=generator, device=device)
    noise = torch.randn(latents[pick].shape, generator=generator, device=device)
    x_t = noise_scheduler.add_noise(latents[pick], noise, t)
    c = cond[pick]
    with torch.no_grad(), autocast:
        both = teacher.denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), Conditioning.cat([c, null.repeat(len(c))]))
        pred_c, pred_null = both.float().chunk(2)
    return x_t, t, w, c, cfg_combine(pred_c, pred_null, w[:, None, None, None])


def main() -> None:
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from dicecli.plugins.toy.world import MODEL_DIR

    args = training_arguments("The guidance-distillation baseline on the toy model.")
    teacher, latents, cond, null = teacher_and_data(args.latents)
    device = latents.device

    torch.manual_seed(args.seed)
    student = UNet2DConditionModel.from_pretrained(MODEL_DIR / "unet", class_embed_type="timestep",
                                                   low_cpu_mem_usage=False, dtype=torch.float32).to(device)
    student.class_embedding.linear_1.reset_parameters()  # new weights: from_pretrained leaves them uninitialised
    torch.nn.init.zeros_(student.class_embedding.linear_2.weight)  # starts as the teacher
    torch.nn.init.zeros_(student.class_embedding.linear_2.bias)
    student.train().requires_grad_(True)
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=1e-2)
    noise_scheduler = DDPMScheduler.from_config(teacher.scheduler.config)
    generator = torch.Generator(device).manual_seed(args.seed)
    log, start, step = [], time.time(), 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    while step < args.steps and time.time() - start < args.max_seconds:
        x_t, t, w, c, target = cfg_batch(teacher, latents, cond, null, noise_scheduler, generator, args.batch_size,
                                         autocast)
        with autocast:
            pred = student(x_t, t, encoder_hidden_states=c.prompt_embeds, class_labels=W_INPUT_SCALE * w).sample
        loss = F.mse_loss(pred.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "loss": loss.item(), "time": round(time.time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
    train_s = time.time() - start
    student.eval().to(torch.float16).save_pretrained(args.out / "unet")
    report = {"steps": step, "batch_size": args.batch_size, "lr": args.lr, "train_s": round(train_s, 1),
              "trainable_parameters": trainable, "w_range": [W_MIN, W_MAX], "w_input_scale": W_INPUT_SCALE,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "seed": args.seed, "log": log}
    (args.out / "gd.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "log"}), flush=True)


if __name__ == "__main__":
    main()
