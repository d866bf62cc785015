"""The `dice` command line: parse, call, report. No logic of its own lives here."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import List, Optional

import typer

from dicecli import __version__
from dicecli.errors import DiceError
from dicecli.errors import UsageError as DiceUsage

app = typer.Typer(
    name="dice",
    help="DICE: distill classifier-free guidance into text embeddings, for CFG-quality images at half the cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Options shared by the commands that load a model.
DeviceOption = typer.Option("auto", "--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N.")
DtypeOption = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary (for cron and scripts).")
JsonOption = typer.Option(False, "--json", help="Print a machine-readable JSON summary.")

# Sampling options shared by `sample` and `transfer`.
CfgOption = typer.Option(1.0, "--cfg", help="Guidance scale: 1 = unguided (one evaluation per step); >1 = CFG (two).")
NegativeOption = typer.Option(None, "--negative", help="Negative prompt (CFG, and the enhancer's second input).")
StepsOption = typer.Option(None, "--steps", min=1, help="Sampler steps [recipe, 20].")
SchedulerOption = typer.Option(None, "--scheduler", help="dpmsolver++ (default), ddim, euler, euler-a, pndm, unipc.")
SeedOption = typer.Option(0, "--seed", help="Image i uses seed + i, whatever the batch size.")
BatchOption = typer.Option(8, "--batch-size", min=1, help="Images per pipeline call.")
HeightOption = typer.Option(None, "--height", help="Image height [recipe, model's native size].")
WidthOption = typer.Option(None, "--width", help="Image width [recipe, model's native size].")
PerPromptOption = typer.Option(1, "--num-per-prompt", min=1, help="Images per prompt.")


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def report(summary: dict, as_json: bool, text: str, quiet: bool, data_on_stdout: bool = False) -> None:
    """JSON to stdout with --json (stderr when stdout carries the data), else one line to stderr."""
    if as_json:
        typer.echo(json.dumps(summary), err=data_on_stdout)
    else:
        info(text, quiet)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dice {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors (accepted anywhere on the line)."),
) -> None:
    """DICE: distill classifier-free guidance into text embeddings."""


@app.command("recipes")
def recipes_command(as_json: bool = JsonOption) -> None:
    """List the shipped model recipes: name, family, source, and whether the model is here."""
    from dicecli.recipes import available_recipes, model_available

    rows = [
        {"name": r.name, "family": r.family, "source": r.source_text, "available": model_available(r),
         "description": r.description}
        for r in available_recipes().values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("name", "family", "source", "available")
    table = [{k: k for k in columns}] + rows
    widths = [max(len(str(row[k])) for row in table) for k in columns]
    for row in table:
        typer.echo("  ".join(str(row[k]).ljust(w) for k, w in zip(columns, widths)).rstrip())


@app.command("encode")
def encode_command(
    prompts: Optional[str] = typer.Argument(None, metavar="PROMPTS", help="Prompts: .txt (one a line), .jsonl, COCO captions .json, or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help="HDF5 cache to write or extend (- for stdout)."),
    model: str = typer.Option(..., "--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Also store the embedding of this negative prompt."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per text-encoder call [recipe, else 64]."),
    images: Optional[str] = typer.Option(None, "--images", help="Instead of prompts: build a latent cache of this imagefolder/COCO data for distill."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="With --images: image size [recipe sample size]."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Encode prompts with MODEL's text encoder into an HDF5 embedding cache (appends only new prompts).

    With --images DATA, encode training images with MODEL's VAE into a latent cache instead.
    """
    from dicecli.encode import encode_images, encode_prompts
    from dicecli.prompts import read_prompts
    from dicecli.recipes import resolve_model
    from dicecli.runtime import select_device, select_dtype

    if (prompts is None) == (images is None):
        raise DiceUsage("dice encode needs either PROMPTS or --images DATA (not both).")
    ref = resolve_model(model)
    torch_device = select_device(device)
    if images is not None:
        latents = encode_images(images, ref, output, resolution=resolution or ref.defaults("sample").get("height", 512),
                                batch_size=batch_size or 16, device=torch_device,
                                dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet))
        report(latents.as_dict(), as_json, f"{output}: {latents.images} images encoded to latents {latents.latent_shape}.", quiet)
        return
    texts = read_prompts(prompts)
    result = encode_prompts(
        texts, ref, output, negative=negative,
        batch_size=batch_size or ref.defaults("encode").get("batch_size", 64),
        device=torch_device, dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet),
    )
    if result.truncated:
        warn(f"{result.truncated} of {result.prompts_new} prompts are longer than {result.tokens} tokens and were truncated.")
    report(
        result.as_dict(), as_json,
        f"{'stdout' if output == '-' else output}: {result.prompts_new} new prompts encoded, {result.prompts_total} in the cache "
        f"({result.family}, {result.tokens}x{result.context_dim}).",
        quiet, data_on_stdout=output == "-",
    )


@app.command("distill")
def distill_command(
    model: str = typer.Option(..., "--model", "-m", help="Teacher model: recipe name, hub id, diffusers folder or .safetensors."),
    data: Optional[str] = typer.Option(None, "--data", help="imagefolder, COCO folder or latent cache (.h5) [recipe]."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Enhancer to write [beside the work dir: dice-runs/NAME.safetensors]."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Take the distill defaults from this recipe instead of MODEL's."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimizer updates [recipe, 8000 for SD1.5]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per update over all GPUs [recipe, 128]."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per update [1]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate [2e-4]."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="CFG scale w of the teacher [5]."),
    negative_prompts: Optional[str] = typer.Option(None, "--negative-prompts", help="builtin, none, or a .txt file [recipe]."),
    loss: Optional[str] = typer.Option(None, "--loss", help="l1 or l2 [recipe]."),
    null_share: Optional[float] = typer.Option(None, "--null-share", help="Share of samples distilled against the empty prompt [0.2]."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Training image size [recipe sample size]."),
    work_dir: Optional[str] = typer.Option(None, "--work-dir", help="Checkpoints, train_log.jsonl, validation grids [dice-runs/NAME]."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in the work dir."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Steps between checkpoints [500]."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order, noise and timesteps."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the denoiser [on for CUDA: 1.5x faster after a few minutes of compiling]."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Write a validation grid at each checkpoint."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Train an enhancer on MODEL so that unguided sampling matches CFG (the DICE objective)."""
    from dicecli.data import open_training_data
    from dicecli.distill import DistillConfig, default_paths, distill
    from dicecli.recipes import available_recipes, resolve_model
    from dicecli.runtime import select_device, select_dtype

    ref = resolve_model(model)
    defaults = ref.defaults("distill")
    if recipe:
        recipes = available_recipes()
        if recipe not in recipes:
            raise DiceUsage(f"--recipe {recipe!r} is not a recipe; see `dice recipes`.")
        defaults = recipes[recipe].defaults("distill")
    given = dict(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, guidance_scale=guidance_scale,
                 negative_prompts=negative_prompts, loss=loss, null_share=null_share, resolution=resolution,
                 checkpoint_every=checkpoint_every)
    settings = {k: v for k, v in defaults.items() if k in DistillConfig.__dataclass_fields__}
    settings.update({k: v for k, v in given.items() if v is not None})
    if "resolution" not in settings:
        settings["resolution"] = ref.defaults("sample").get("height", 512)
    torch_device = select_device(device)
    if compile is None:
        compile = torch_device.type == "cuda"
    config = DistillConfig(**settings, seed=seed, compile=compile, validate=validate)
    training_data = open_training_data(data or defaults.get("data"), ref.recipe.name if ref.recipe else "")
    work, out = default_paths(ref.recipe.name if ref.recipe else ref.given, work_dir, output)
    result = distill(ref, training_data, config, work_dir=work, output=out, resume=resume, device=torch_device,
                     dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet))
    if not result.main_process:
        return  # under `accelerate launch`/torchrun, only the main process reports
    summary = {k: v for k, v in vars(result).items() if k not in ("log", "main_process")}
    report(summary, as_json, f"{result.output}: enhancer after {result.steps} steps (loss {result.final_loss:.4f}); "
           f"checkpoints and train_log.jsonl in {result.work_dir}.", quiet)


@app.command("enhance")
def enhance_command(
    source: str = typer.Argument(..., metavar="INPUT", help="Prompts file (.txt/.jsonl/.json), embedding cache (.h5), or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help="Enhanced embedding cache to write (- for stdout)."),
    enhancer: str = typer.Option(..., "--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, or `toy` (the shipped reference enhancer)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Text encoder to use [the cache's model, else the enhancer's trained_on]."),
    alpha: float = typer.Option(1.0, "--alpha", help="Strength: c' = c + alpha * E(c, c_neg)."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt given to the enhancer [the cache's, else empty]."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Prompts per batch."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Apply an enhancer to prompts or an embedding cache; only the text encoder is loaded."""
    from pathlib import Path

    from dicecli.enhance import enhance
    from dicecli.enhancer import resolve_enhancer
    from dicecli.runtime import select_device, select_dtype

    torch_device = select_device(device)
    result = enhance(source, output, resolve_enhancer(enhancer), model=model, alpha=alpha, negative=negative, batch_size=batch_size,
                     device=torch_device, dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet))
    report(result.as_dict(), as_json, f"{'stdout' if output == '-' else output}: {result.prompts} prompts enhanced (alpha {result.alpha:g}).",
           quiet, data_on_stdout=output == "-")


@app.command("sample")
def sample_command(
    source: Optional[str] = typer.Argument(None, metavar="[INPUT]", help="Embedding cache (.h5), prompts file, or - (default: piped stdin)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Sample folder [samples/MODEL-METHOD-cfgW-aA-sN]."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model [the cache's model; the enhancer's trained_on]."),
    enhancer: Optional[str] = typer.Option(None, "--enhancer", "-e", help="Enhancer .safetensors to apply to plain embeddings, or `toy` (shipped)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Enhancer strength [1]."),
    cfg: float = CfgOption,
    negative: Optional[str] = NegativeOption,
    steps: Optional[int] = StepsOption,
    scheduler: Optional[str] = SchedulerOption,
    seed: int = SeedOption,
    batch_size: int = BatchOption,
    height: Optional[int] = HeightOption,
    width: Optional[int] = WidthOption,
    num_per_prompt: int = PerPromptOption,
    compile: bool = typer.Option(False, "--compile", help="torch.compile the UNet and VAE decoder (worth it for hundreds of images)."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate images from embeddings or prompts: unguided, CFG, DICE (--enhancer), or DICE + CFG."""
    from pathlib import Path

    from dicecli.enhancer import resolve_enhancer
    from dicecli.runtime import select_device, select_dtype
    from dicecli.sample import prepare_job
    from dicecli.sampling import run_job

    torch_device = select_device(device)
    job = prepare_job(source, model=model, enhancer=resolve_enhancer(enhancer) if enhancer else None, alpha=alpha, cfg=cfg,
                      negative=negative, steps=steps, scheduler=scheduler, seed=seed, height=height, width=width,
                      num_per_prompt=num_per_prompt, device=torch_device, dtype=select_dtype(dtype, torch_device))
    folder = Path(output) if output else job.settings.default_folder()
    if compile:
        job.adapter.compile_denoiser(vae_decoder=True)
    result = run_job(job, folder, batch_size, progress=show_progress(quiet))
    summary = {k: v for k, v in vars(result).items() if k != "settings"}
    report(summary, as_json, f"{result.output}: {result.generated} images generated, {result.skipped} already there "
           f"({job.settings.method}, {result.nfe_per_image} model evaluations per image).", quiet)


@app.command("transfer")
def transfer_command(
    paths: List[str] = typer.Argument(..., metavar="ENHANCER... INPUT", help="Enhancer files, then the prompts file."),
    to: List[str] = typer.Option(..., "--to", help="Target model (repeat, or comma-separate): recipe, hub id, folder, .safetensors."),
    output: str = typer.Option(..., "-o", "--output", help="Folder for the sample folders, grid.png and the compatibility report."),
    alpha: float = typer.Option(1.0, "--alpha", help="Enhancer strength."),
    cfg: float = CfgOption,
    negative: Optional[str] = NegativeOption,
    steps: Optional[int] = StepsOption,
    scheduler: Optional[str] = SchedulerOption,
    seed: int = SeedOption,
    batch_size: int = BatchOption,
    height: Optional[int] = HeightOption,
    width: Optional[int] = WidthOption,
    num_per_prompt: int = PerPromptOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Apply enhancers to other models of their family: sample folders, a grid and a compatibility report.

    One sample folder per (model, enhancer) pair plus the unguided baseline per model.
    """
    from pathlib import Path

    from dicecli.enhancer import resolve_enhancer
    from dicecli.runtime import select_device, select_dtype
    from dicecli.transfer import transfer

    if len(paths) < 2:
        raise DiceUsage("dice transfer needs ENHANCER... and then INPUT (a prompts file).")
    targets = [t for value in to for t in value.split(",") if t]
    torch_device = select_device(device)
    result = transfer([resolve_enhancer(p) for p in paths[:-1]], targets, paths[-1], Path(output), alpha=alpha, cfg=cfg,
                      negative=negative, steps=steps, scheduler=scheduler, seed=seed, batch_size=batch_size,
                      height=height, width=width, num_per_prompt=num_per_prompt, device=torch_device,
                      dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet))
    report(vars(result), as_json, f"{result.output}: {len(result.folders)} sample folders, grid {result.grid}, "
           f"report {result.output}/compatibility.md.", quiet)


@app.command("eval")
def eval_command(
    folders: List[str] = typer.Argument(..., metavar="FOLDER...", help="Sample folders from `dice sample`."),
    ref: Optional[str] = typer.Option(None, "--ref", help="FID reference: an image folder or statistics from `dice fid-stats`."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated: fid, clip, aesthetic, toy (toy-world alignment + FID) [clip,aesthetic; +fid with --ref]."),
    fid_features: str = typer.Option("inception", "--fid-features", help="inception (clean-fid) or tiny-random (smoke tests)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="CLIP model for the CLIP score [laion/CLIP-ViT-g-14-laion2B-s12B-b42K]."),
    aesthetic_clip: Optional[str] = typer.Option(None, "--aesthetic-clip", help="CLIP under the aesthetic predictor [openai/clip-vit-large-patch14]."),
    aesthetic_weights: Optional[str] = typer.Option(None, "--aesthetic-weights", help="LAION aesthetic predictor weights: a .pth/.safetensors path, or REPO_ID:FILE in the hub cache."),
    output_format: str = typer.Option("table", "--format", help="What to print: table (Markdown), json or csv."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write REPORT.json, REPORT.md, REPORT.csv (and REPORT-nfe.png)."),
    device: str = DeviceOption,
) -> None:
    """FID, CLIP score and aesthetic score of sample folders, as the paper's Table 1 (and Figure 5 across step counts)."""
    from pathlib import Path

    from dicecli.evaluate import DEFAULT_AESTHETIC_CLIP, DEFAULT_CLIP, csv_text, evaluate, json_text, markdown_table, nfe_plot
    from dicecli.files import atomic_path
    from dicecli.runtime import select_device

    if output_format not in ("table", "json", "csv"):
        raise DiceUsage(f"--format {output_format!r} is not known; use table, json or csv.")
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else ["clip", "aesthetic"] + (["fid"] if ref else [])
    result = evaluate([Path(f) for f in folders], ref=ref, metrics=chosen, fid_features=fid_features,
                      clip_model=clip_model or DEFAULT_CLIP, aesthetic_clip=aesthetic_clip or DEFAULT_AESTHETIC_CLIP,
                      aesthetic_weights=aesthetic_weights,
                      device=select_device(device))
    if output:
        base = Path(output)
        if nfe_plot(result, base.with_name(base.name + "-nfe.png")):
            result.plot = str(base.with_name(base.name + "-nfe.png"))
        for suffix, text in ((".json", json_text(result)), (".md", markdown_table(result)), (".csv", csv_text(result))):
            with atomic_path(base.with_name(base.name + suffix)) as tmp:
                tmp.write_text(text, encoding="utf-8")
    typer.echo({"table": markdown_table, "json": json_text, "csv": csv_text}[output_format](result), nl=False)


@app.command("fid-stats")
def fid_stats_command(
    folder: str = typer.Argument(..., metavar="FOLDER", help="Reference images (e.g. COCO 2017 val resized), or a sample folder."),
    output: str = typer.Option(..., "-o", "--output", help="Statistics file (.npz) for `dice eval --ref`."),
    fid_features: str = typer.Option("inception", "--fid-features", help="inception (clean-fid) or tiny-random (smoke tests)."),
    device: str = DeviceOption,
    quiet: bool = QuietOption,
) -> None:
    """Compute and save FID reference statistics (mean and covariance of the features) of an image folder."""
    from pathlib import Path

    from dicecli.evaluate import feature_extractor, folder_features, open_folder, save_statistics
    from dicecli.files import check_writable
    from dicecli.runtime import select_device

    check_writable(Path(output))
    torch_device = select_device(device)
    extractor, _ = feature_extractor(fid_features, torch_device)
    images = open_folder(Path(folder)).images
    save_statistics(Path(output), folder_features(images, extractor, torch_device), fid_features, folder)
    info(f"{output}: FID statistics of {len(images)} images ({fid_features} features).", quiet)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns failures into one sentence and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("DICE_DEBUG"))
    args = [a for a in args if a != "--debug"]
    try:
        # Typer reports its own usage errors (exit 2) and exits; our failures come out as exceptions.
        app(args=args, prog_name="dice")
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except DiceError as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {type(error).__name__}: {error} (run again with --debug for the traceback).", err=True)
        sys.exit(1)
    sys.exit(0)
