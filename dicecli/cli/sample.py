"""`dice sample`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dicecli.cli.app import app, devices, notes, report, show_progress
from dicecli.cli.options import (ClipSkipOption, EmbeddingOption, LoraOption, CfgOption, EnhancePartOption, DeviceOption, Dtype, DtypeOption, SampleEnhancerOption, HeightOption,
                                 JsonOption, NegativeOption, OptionalModel, PerPromptOption, QuietOption,
                                 SampleBatchOption, SchedulerOption, SeedOption, StepsOption, VaeOption, WidthOption,
                                 value)


@app.command("sample")
def sample_command(
    source: Annotated[Optional[str], typer.Argument(metavar="INPUT", help="Embedding cache (.h5), prompts file, or - (default: piped stdin).")] = None,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Sample folder (default: samples/MODEL-METHOD-cfgW-aA-sN).")] = None,
    model: OptionalModel = None,
    enhancer: SampleEnhancerOption = None,
    alpha: Annotated[Optional[str], typer.Option("--alpha", help="Enhancer strength: c' = c + alpha * E(c, c_neg) (default: the recipe's, else 1); several, comma-separated (0,0.5,1,1.5), sample one folder per strength into -o (a sweep `dice eval` plots).")] = None,
    enhance_part: EnhancePartOption = None,
    cfg: CfgOption = 1.0,
    negative: NegativeOption = None,
    steps: StepsOption = None,
    scheduler: SchedulerOption = None,
    seed: SeedOption = 0,
    batch_size: SampleBatchOption = 8,
    height: HeightOption = None,
    width: WidthOption = None,
    num_per_prompt: PerPromptOption = 1,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the denoiser and VAE decoder (worth it for hundreds of images).")] = False,
    vae: VaeOption = None,
    clip_skip: ClipSkipOption = None,
    embedding: EmbeddingOption = None,
    lora: LoraOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Generate images from embeddings or prompts: unguided, CFG, DICE (--enhancer), or DICE + CFG."""
    from dicecli.runtime import Runtime
    from dicecli.errors import UsageError
    from dicecli.sample import (parse_alphas, prepare_job, sample_alpha_sweep, sample_checkpoint_sweep,
                                work_dir_checkpoints)
    from dicecli.sampling import run_job
    from dicecli.settings import SampleOptions

    alphas = parse_alphas(alpha)
    options = SampleOptions(model=model, enhancer=enhancer, alpha=alphas and alphas[0], part=value(enhance_part),
                            negative=negative, vae=vae, clip_skip=clip_skip, embeddings=tuple(embedding or ()),
                            loras=tuple(lora or ()), cfg=cfg, steps=steps, scheduler=value(scheduler),
                            height=height, width=width, seed=seed, num_per_prompt=num_per_prompt)
    runtime = Runtime(*devices(device, dtype), batch_size, show_progress(quiet), notes(quiet), compile)
    output_folder = Path(output) if output else None
    checkpoints = work_dir_checkpoints(Path(enhancer)) if enhancer else None
    if checkpoints is not None:  # --enhancer WORK_DIR: every checkpoint, quality over training
        if alphas is not None and len(alphas) > 1 or output_folder is None:
            raise UsageError(f"--enhancer {enhancer} is a distill work dir: its checkpoints are sampled one folder "
                             "each, at one --alpha, into the folder -o names; give -o (and one strength).")
        sweep = sample_checkpoint_sweep(source, checkpoints, output_folder, options, runtime)
        report(vars(sweep), as_json, f"{sweep.output}: {len(sweep.folders)} sample folders (checkpoints at steps "
               f"{', '.join(f'{s:,}' for s in sweep.steps)}), {sweep.generated} images generated, {sweep.skipped} "
               f"already there; grid {sweep.grid}.", quiet)
        return
    if alphas is not None and len(alphas) > 1:
        sweep = sample_alpha_sweep(source, alphas, output_folder, options, runtime)
        report(vars(sweep), as_json, f"{sweep.output}: {len(sweep.folders)} sample folders (alpha "
               f"{', '.join(f'{a:g}' for a in alphas)}), {sweep.generated} images generated, {sweep.skipped} already "
               f"there; grid {sweep.grid}.", quiet)
        return
    job = prepare_job(source, options, runtime, output_folder)
    if compile:
        job.adapter.compile_denoiser(vae_decoder=True)
    result = run_job(job, output_folder or job.settings.default_folder(), batch_size, runtime.progress)
    summary = {k: v for k, v in vars(result).items() if k != "settings"}
    report(summary, as_json, f"{result.output}: {result.generated} images generated, {result.skipped} already there "
           f"({job.settings.method}, {result.nfe_per_image} model evaluations per image).", quiet)
