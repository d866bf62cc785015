"""Build the toy model from scratch (GPU): word tokenizer, frozen CLIP text encoder, VAE, UNet, evaluator.

    python scripts/toy/build_toy.py OUT_DIR [--seconds-eval 60 --seconds-vae 90 --seconds-unet 330]
    python scripts/toy/build_toy.py OUT_DIR --steps-eval N --steps-vae N --steps-unet N   # exact steps
    python scripts/toy/build_toy.py OUT_DIR --only evaluator    # or --only model: the stages run apart

Seeded. Stages: render the toy world; train the attribute classifier (the evaluator) on renders
of every colour–shape pair (held out from the generator, not from the judge); train a small
AutoencoderKL; make the text encoder (pretrained to read a caption's stated attributes, then
frozen, as CLIP is in SD); encode the images; train a small UNet2DConditionModel on the latents
with 10 % caption dropout; save a diffusers StableDiffusionPipeline (fp16) and the evaluator.
Time budgets, not step counts, bound the training stages unless --steps-* are given, so the
script fits one command on a lent GPU; the steps reached are printed and saved (report.json,
evaluator.json). --reuse DIR takes the VAE of an earlier build (DIR/vae; it depends on neither
text nor captions). The evaluator and the model share nothing, so `--only evaluator` and
`--only model` run side by side on one GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dicecli.plugins.toy.world import (BACKGROUND_NAMES, COLOR_NAMES, POSITION_NAMES, SHAPES, SIZE_NAMES, AttributeNet,
                              ToyWorld, alignment, read, scene_labels, to_input)

# What a caption states, read by the text encoder's pretraining heads: background, then for the
# first and second object mentioned its shape, colour, size and position; each with one more
# class for "not stated".
STATED_KINDS = [("background", BACKGROUND_NAMES)] + [
    (f"{key}{k}", names) for k in range(2)
    for key, names in (("shape", SHAPES), ("color", COLOR_NAMES), ("size", SIZE_NAMES), ("position", POSITION_NAMES))]


def render_chunk(args):
    seed, pairs, start, stop = args
    world = ToyWorld(seed=seed, pairs=pairs)
    return np.stack([np.asarray(world.image(i)) for i in range(start, stop)])


def render(world_seed: int, count: int, pairs: str = "seen", workers: int = 14) -> np.ndarray:
    chunks = [(world_seed, pairs, s, min(s + 2000, count)) for s in range(0, count, 2000)]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(render_chunk, chunks)))


def running(start: float, seconds: float, step: int, steps: int | None) -> bool:
    """Train for `steps` when given (exact rebuilds), else for `seconds` (fits a command's time limit)."""
    return step < steps if steps is not None else time.time() - start < seconds


def train_evaluator(images, labels, device, seconds: float, steps: int | None = None) -> tuple[AttributeNet, int]:
    torch.manual_seed(0)
    net = AttributeNet().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    start, step = time.time(), 0
    n = len(images)
    while running(start, seconds, step, steps):
        idx = np.random.default_rng(step).integers(0, n, 256)
        out = net(to_input(images[idx], device))
        lab = {k: torch.from_numpy(v[idx]).to(device) for k, v in labels.items()}
        loss = F.cross_entropy(out["background"], lab["background"]) + F.cross_entropy(out["present"].flatten(0, 1), lab["present"].flatten())
        for key in ("shape", "color", "size"):
            loss = loss + F.cross_entropy(out[key].flatten(0, 1), lab[key].flatten(), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    return net.eval(), step


def train_vae(images, device, seconds: float, steps: int | None = None):
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=16, sample_size=64).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    start, step = time.time(), 0
    while running(start, seconds, step, steps):
        x = to_input(images[np.random.default_rng(10_000 + step).integers(0, len(images), 128)], device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample()
            recon = vae.decode(z).sample
        loss = F.mse_loss(recon.float(), x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    vae.trained_steps, vae.final_mse = step, loss.item()
    return vae


def stated_targets(stated: dict) -> list[int]:
    """Class indices of STATED_KINDS for one caption (len(names) = not stated)."""
    out = [BACKGROUND_NAMES.index(stated["background"]) if "background" in stated else len(BACKGROUND_NAMES)]
    for k in range(2):
        thing = stated["objects"][k] if k < len(stated["objects"]) else {}
        for key, names in (("shape", SHAPES), ("color", COLOR_NAMES), ("size", SIZE_NAMES), ("position", POSITION_NAMES)):
            out.append(names.index(thing[key]) if key in thing else len(names))
    return out


def pretrain_text_encoder(text_encoder, ids: torch.Tensor, targets: torch.Tensor, device, steps: int) -> dict:
    """Teach the text encoder to state what a caption says, from its pooled (end-of-text) output.

    A random encoder leaves binding (which colour goes with which shape, which word names the
    background) to the UNet's cross-attention; a pretrained one hands the UNet bound, semantic
    token states, as CLIP does for Stable Diffusion. Frozen afterwards, like CLIP in SD.
    """
    sizes = [len(names) + 1 for _, names in STATED_KINDS]
    head = torch.nn.Linear(text_encoder.config.hidden_size, sum(sizes)).to(device)
    text_encoder.train().requires_grad_(True)
    opt = torch.optim.AdamW(list(text_encoder.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=1e-2)
    targets = targets.to(device)
    for step in range(steps):
        idx = torch.from_numpy(np.random.default_rng(30_000 + step).integers(0, len(ids), 512))
        logits = head(text_encoder(ids[idx].to(device)).pooler_output).split(sizes, dim=1)
        idx = idx.to(device)
        loss = sum(F.cross_entropy(lg, targets[idx, k]) for k, lg in enumerate(logits)) / len(sizes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    text_encoder.eval().requires_grad_(False)
    with torch.no_grad():
        idx = torch.arange(min(4096, len(ids)), device=device)
        logits = head(text_encoder(ids[idx.cpu()].to(device)).pooler_output).split(sizes, dim=1)
        accuracy = float(np.mean([(lg.argmax(1) == targets[idx, k]).float().mean().item() for k, lg in enumerate(logits)]))
    return {"steps": steps, "final_loss": loss.item(), "accuracy": accuracy}


def build_evaluator(args, device) -> dict:
    """The judge: trained on renders of every colour–shape pair, checked on fresh renders of held-out ones."""
    world = ToyWorld(size=args.images, seed=0, pairs="all")
    images = render(0, args.images, "all")
    labels = {k: np.stack([scene_labels(world.scene(i))[k] for i in range(args.images)])
              for k in ("background", "present", "shape", "color", "size")}
    evaluator, steps = train_evaluator(images, labels, device, args.seconds_eval, args.steps_eval)
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in evaluator.state_dict().items()}, str(args.out / "toy-evaluator.safetensors"))
    check = ToyWorld(size=1000, seed=1, pairs="held_out")
    truth = [alignment(check.scene(i).stated, r) for i, r in enumerate(read(evaluator, render(1, 1000, "held_out"), device))]
    return {"steps": steps, "alignment_on_ground_truth_renders_of_held_out_pairs": float(np.mean(truth))}


def build_model(args, device) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dicecli.miniatures import clip_word_tokenizer

    report: dict = {}
    t0 = time.time()
    world = ToyWorld(size=args.images, seed=0)
    images = render(0, args.images)
    report["render_s"] = round(time.time() - t0, 1)

    # 1. tokenizer and text encoder (pretrained on training captions, then frozen while the UNet trains)
    tokenizer = clip_word_tokenizer(world.vocabulary())
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=args.text_width, intermediate_size=2 * args.text_width,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, projection_dim=args.text_width, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        ids = tokenizer([world.caption(i) for i in range(args.images)], padding="max_length", max_length=77,
                        truncation=True, return_tensors="pt").input_ids
    if args.text_pretrain_steps:
        torch.manual_seed(3)
        targets = torch.tensor([stated_targets(world.scene(i).stated) for i in range(args.images)])
        report["text_pretrain"] = pretrain_text_encoder(text_encoder, ids, targets, device, args.text_pretrain_steps)
        print(json.dumps(report["text_pretrain"]), flush=True)
    report["text_encoder"] = {"width": args.text_width, "pretrain_steps": args.text_pretrain_steps}

    # 2. VAE
    if args.reuse:
        vae = AutoencoderKL.from_pretrained(args.reuse / "vae", dtype=torch.float32).to(device)
        report["vae"] = {"reused_from": str(args.reuse / "vae")}
    else:
        vae = train_vae(images, device, args.seconds_vae, args.steps_vae)
        report["vae"] = {"steps": vae.trained_steps, "final_mse": vae.final_mse}
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(to_input(images[s : s + 1024], device)).latent_dist.mean for s in range(0, args.images, 1024)])
    if not args.reuse:
        vae.register_to_config(scaling_factor=1.0 / latents.std().item())
    latents = latents * vae.config.scaling_factor
    print(json.dumps(report["vae"] | {"scaling_factor": vae.config.scaling_factor}), flush=True)

    # 3. UNet on cached latents and frozen text embeddings, 10 % empty captions
    with torch.no_grad():
        embeds = torch.cat([text_encoder(ids[s : s + 4096].to(device))[0] for s in range(0, args.images, 4096)]).half()
        null = text_encoder(tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device))[0].half()
    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=args.text_width, attention_head_dim=8, norm_num_groups=32).to(device)
    report["unet_parameters"] = sum(p.numel() for p in unet.parameters())
    noise_scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=4e-4, weight_decay=1e-2)
    start, step = time.time(), 0
    while running(start, args.seconds_unet, step, args.steps_unet):
        rng = np.random.default_rng(20_000 + step)
        idx = torch.from_numpy(rng.integers(0, args.images, 256))
        x0 = latents[idx.to(device)]
        cond = embeds[idx.to(device)]
        drop = torch.from_numpy(rng.random(256) < 0.1).to(device)
        cond = torch.where(drop[:, None, None], null.expand_as(cond), cond)
        t = torch.randint(0, 1000, (256,), device=device)
        noise = torch.randn_like(x0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = unet(noise_scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=cond.float()).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
    unet.eval().requires_grad_(False)
    report["unet"] = {"steps": step, "final_loss": loss.item(), "train_s": round(time.time() - start, 1)}
    print(json.dumps(report["unet"] | {"parameters": report["unet_parameters"]}), flush=True)

    # 4. save the pipeline (fp16)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(args.out / "toy")
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", choices=("evaluator", "model"), default=None, help="build one of the two (default: both)")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--seconds-eval", type=float, default=60)
    parser.add_argument("--seconds-vae", type=float, default=90)
    parser.add_argument("--seconds-unet", type=float, default=360)
    for stage in ("eval", "vae", "unet"):  # exact rebuilds: the step counts of report.json / evaluator.json
        parser.add_argument(f"--steps-{stage}", type=int, default=None)
    parser.add_argument("--text-width", type=int, default=256, help="text encoder width = UNet cross-attention dim")
    parser.add_argument("--text-pretrain-steps", type=int, default=1000,
                        help="pretrain the text encoder to read captions' stated attributes (0: random, frozen)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="a pipeline folder of an earlier build (dicecli/plugins/toy/model): take its VAE")
    args = parser.parse_args()
    if args.reuse and not (args.reuse / "vae" / "config.json").is_file():
        parser.error(f"--reuse {args.reuse} holds no vae/config.json; give an earlier build's pipeline folder "
                     "(dicecli/plugins/toy/model for the shipped one).")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "evaluator"):
        report = {"device": card, "seeds": {"world": 0, "check": 1}, **build_evaluator(args, device)}
        (args.out / "evaluator.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report), flush=True)
    if args.only in (None, "model"):
        report = {"device": card, "seeds": {"world": 0, "text_encoder": 0, "text_pretrain": 3, "unet": 2},
                  **build_model(args, device)}
        (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
