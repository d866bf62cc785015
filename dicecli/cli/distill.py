"""`dice distill`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, report, show_progress
from dicecli.cli.options import ClipSkipOption, EmbeddingOption, LoraOption, DeviceOption, Dtype, DtypeOption, JsonOption, Loss, QuietOption, VaeOption, layered, value
from dicecli.settings import DistillConfig


def family_layered(name: str) -> str:
    """Settings whose default differs per family (the paper's SD1.5 and SDXL recipes; docs/models.md, "Recipes, settings and numbers")."""
    return "(default: the recipe's, else the family's reference recipe: docs/models.md)"


@app.command("distill")
def distill_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Teacher model: recipe name, hub id, diffusers folder or .safetensors.")] = ...,
    data: Annotated[Optional[str], typer.Option("--data", help="imagefolder, COCO folder or latent cache (.h5), or data a plug-in makes (default: the recipe's).")] = None,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Enhancer to write (default: beside the work dir, dice-runs/NAME.safetensors).")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Take the distill defaults from this recipe instead of MODEL's.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help=f"Optimizer updates {family_layered('steps')}.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help=f"Images per update over all GPUs {layered(DistillConfig, 'batch_size')}.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", min=1, help=f"Micro-batches per update {layered(DistillConfig, 'grad_accum')}.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help=f"AdamW learning rate {layered(DistillConfig, 'lr')}.")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option("--guidance-scale", help=f"CFG scale w of the teacher {layered(DistillConfig, 'guidance_scale')}.")] = None,
    negative_prompts: Annotated[Optional[str], typer.Option("--negative-prompts", help=f"builtin, none, or a .txt file {layered(DistillConfig, 'negative_prompts')}.")] = None,
    loss: Annotated[Optional[Loss], typer.Option("--loss", help=f"l1 or l2 {family_layered('loss')}.")] = None,
    null_share: Annotated[Optional[float], typer.Option("--null-share", help=f"Share of samples distilled against the empty prompt {layered(DistillConfig, 'null_share')}.")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option("--lr-schedule", help=f"constant, cosine or linear decay to 0 after the warm-up {layered(DistillConfig, 'lr_schedule')}.")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option("--warmup-steps", help=f"Steps of linear learning-rate warm-up {layered(DistillConfig, 'warmup_steps')}.")] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help=f"Write an exponential moving average of the weights with this decay, e.g. 0.999; 0 is off {layered(DistillConfig, 'ema')}.")] = None,
    timesteps: Annotated[Optional[str], typer.Option("--timesteps", help=f"How t is drawn: uniform or logit-normal, more mid-range t {layered(DistillConfig, 'timesteps')}.")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Training image size (default: the recipe's, else its sample height, else the model's native size).")] = None,
    work_dir: Annotated[Optional[str], typer.Option("--work-dir", help="Checkpoints, train_log.jsonl, validation grids (default: dice-runs/NAME).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue exactly from the latest checkpoint in the work dir.")] = False,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", min=1, help=f"Steps between checkpoints {layered(DistillConfig, 'checkpoint_every')}.")] = None,
    keep_checkpoints: Annotated[Optional[int], typer.Option("--keep-checkpoints", min=0, help=f"The newest checkpoints kept; 0 keeps every one, to score them all with `dice sample --enhancer WORK_DIR` {layered(DistillConfig, 'keep_checkpoints')}.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, data order, noise and timesteps.")] = 0,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the denoiser (default: on for CUDA, 1.5x faster after a few minutes of compiling).")] = None,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Write a validation grid at each checkpoint.")] = True,
    allow_other_vae: Annotated[bool, typer.Option("--allow-other-vae", help="Train on a latent cache made with another VAE than MODEL's (refused otherwise).")] = False,
    vae: VaeOption = None,
    clip_skip: ClipSkipOption = None,
    embedding: EmbeddingOption = None,
    lora: LoraOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train an enhancer on MODEL so that unguided sampling matches CFG (the DICE objective)."""
    from dicecli.data import open_training_data
    from dicecli.distill import default_paths, distill
    from dicecli.recipes import find_recipe
    from dicecli.refs import model_defaults, resolve_model
    from dicecli.runtime import Runtime
    from dicecli.settings import DistillConfig

    ref = resolve_model(model, vae=vae, clip_skip=clip_skip, embeddings=tuple(embedding or ()),
                        loras=tuple(lora or ()))
    torch_device, torch_dtype = devices(device, dtype)  # joins the job; accelerate adopts it
    config = DistillConfig.resolve(
        ref.family, find_recipe(recipe) if recipe else ref.recipe, model_defaults(ref), data=data, steps=steps, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, guidance_scale=guidance_scale, negative_prompts=negative_prompts, loss=value(loss),
        null_share=null_share, lr_schedule=lr_schedule, warmup_steps=warmup_steps, ema=ema, timesteps=timesteps,
        resolution=resolution, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, seed=seed,
        compile=torch_device.type == "cuda" if compile is None else compile, validate=validate,
    )
    training_data = open_training_data(config.data, ref.recipe.name if ref.recipe else "")
    work, out = default_paths(ref, work_dir, output)
    runtime = Runtime(torch_device, torch_dtype, progress=show_progress(quiet))
    result = distill(ref, training_data, config, work, out, runtime, resume, allow_other_vae)
    if not result.main_process:
        return  # under `accelerate launch`/torchrun, only the main process reports
    summary = {k: v for k, v in vars(result).items() if k not in ("log", "main_process")}
    loss = f"loss {result.final_loss:.4f}" if result.final_loss is not None else "written from its last checkpoint"
    report(summary, as_json, f"{result.output}: enhancer after {result.steps} steps ({loss}); "
           f"checkpoints and train_log.jsonl in {result.work_dir}.", quiet)
