"""`dice sample`: embeddings or prompts -> a sample folder, unguided, CFG, DICE, or DICE + CFG."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from dicecli import distributed
from dicecli.errors import UsageError
from dicecli.files import atomic_path, check_output
from dicecli.preparation import STDIN, Prepared, open_enhancer, prepare, read_input
from dicecli.checkpoints import WorkDir
from dicecli.samplefolder import SETTINGS_FILE, checkpoint_member, image_name, sweep_member, write_sweep
from dicecli.sampling import SampleJob, SampleResult, image_grid, make_job, open_image, run_job
from dicecli.runtime import Runtime
from dicecli.settings import SampleConfig, SampleOptions

GRID_PROMPTS = 4  # prompts (rows) in a sweep's grid.png

NEEDS_INPUT = ("dice sample needs INPUT: an embedding cache (.h5), a prompts file with --model, "
               "or a cache or prompts piped to standard input.")


def resolve_source(source: str | None) -> str:
    """No INPUT: read standard input when something is piped in, else say what is needed."""
    if source is not None:
        return source
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(NEEDS_INPUT)
    return STDIN


def parse_alphas(text: str | None) -> list[float] | None:
    """`--alpha`: one strength, or several separated by commas (a sweep: one sample folder per strength)."""
    if text is None:
        return None
    try:
        values = [float(item) for item in text.split(",")]
    except ValueError:
        raise UsageError(f"--alpha {text!r} must be a number, or numbers separated by commas for a sweep "
                         "(e.g. 0,0.5,1,1.5).") from None
    repeated = sorted({f"{v:g}" for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"--alpha lists {', '.join(repeated)} more than once; give each strength once.")
    return values


def prepare_inputs(source: str | None, options: SampleOptions, output: Path | None = None) -> Prepared:
    """INPUT, model, enhancer, strength and negative prompt, read and checked (no weights loaded)."""
    options.check()  # numbers first, before any file is read
    chosen_enhancer = open_enhancer(options.enhancer) if options.enhancer else None
    data = read_input(resolve_source(source), empty_stdin=NEEDS_INPUT if source is None else None)
    prepared = prepare(data, options, enhancer=chosen_enhancer, needs_model_for="Sampling a prompts file")
    if output is not None:  # before any weights load (run_job checks the default folder)
        check_output(output, prepared.input_paths, folder=True)
    return prepared


def prepare_job(source: str | None, options: SampleOptions, runtime: Runtime, output: Path | None = None) -> SampleJob:
    return make_job(prepare_inputs(source, options, output), options, runtime)


@dataclass
class SweepResult:
    output: str
    folders: list[str]
    generated: int
    skipped: int
    grid: str | None
    alphas: list[float] | None = None  # a strength sweep's strengths
    steps: list[int] | None = None  # a checkpoint sweep's training steps


def sample_alpha_sweep(source: str | None, alphas: list[float], output: Path | None, options: SampleOptions,
                       runtime: Runtime) -> SweepResult:
    """One sample folder per strength (OUTPUT/alpha-A/), sharing the model, the enhancer and the seeds, with
    OUTPUT/dice-sweep.json (which `dice eval` reads as a curve) and OUTPUT/grid.png (prompts x strengths)."""
    if not options.enhancer:
        raise UsageError("--alpha with several strengths needs --enhancer (a sweep of the enhancer's strength).")
    for alpha in alphas:
        SampleConfig(alpha=alpha).check(None)
    first = prepare_inputs(source, dataclasses.replace(options, alpha=alphas[0]), output)
    net = first.enhancer.load(runtime.device)
    members = [(sweep_member(a), lambda a=a: (dataclasses.replace(first, alpha=a), net)) for a in alphas]
    result = run_sweep(first, members, ("alpha", alphas, [f"alpha {a:g}" for a in alphas]), output, options, runtime)
    result.alphas = alphas
    return result


def work_dir_checkpoints(work: Path) -> list[tuple[int, Path]] | None:
    """A distill work dir's checkpoints as (step, enhancer file), oldest first: the file `-o` would have been (the
    --ema average where there is one); None when `work` is not a work dir."""
    if not (Path(work) / "checkpoints").is_dir():
        return None
    found = []
    for checkpoint in WorkDir(work).done():
        step = int(json.loads((checkpoint / "trainer.json").read_text())["step"])
        averaged = checkpoint / "enhancer-ema.safetensors"
        found.append((step, averaged if averaged.is_file() else checkpoint / "enhancer.safetensors"))
    if not found:
        raise UsageError(f"Work dir {work} holds no complete checkpoint yet; give an enhancer file, or let "
                         "`dice distill` write a checkpoint first (--checkpoint-every).")
    return found


def sample_checkpoint_sweep(source: str | None, checkpoints: list[tuple[int, Path]], output: Path | None,
                            options: SampleOptions, runtime: Runtime) -> SweepResult:
    """`--enhancer WORK_DIR`: one sample folder per checkpoint of a distill work dir (OUTPUT/step-NNNNNNN/), with
    the same seeds, and the sweep index `dice eval` plots as quality against training steps (the paper's Fig. 16)."""
    steps = [step for step, _ in checkpoints]
    first = prepare_inputs(source, dataclasses.replace(options, enhancer=str(checkpoints[0][1])), output)

    def member(file: Path):
        prepared = dataclasses.replace(first, enhancer=open_enhancer(file))  # one run's checkpoints: one model, one shape
        return prepared, prepared.enhancer.load(runtime.device)

    members = [(checkpoint_member(step), lambda f=file: member(f)) for step, file in checkpoints]
    result = run_sweep(first, members, ("step", steps, [f"step {s:,}" for s in steps]), output, options, runtime)
    result.steps = steps
    return result


def run_sweep(first: Prepared, members: list, axis: tuple, output: Path | None, options: SampleOptions,
              runtime: Runtime) -> SweepResult:
    """Sample every member (folder name, a callable giving its Prepared and enhancer network) into OUTPUT/NAME/,
    one member's embeddings in memory at a time and one model for all; then grid.png and the sweep index. `axis`:
    (the setting swept, its values, the grid's column titles)."""
    setting, values, titles = axis
    results: list[SampleResult] = []
    for name, make in members:
        prepared, net = make()
        job = make_job(prepared, options, runtime, adapter=first.adapter, enhancer=net)
        if first.adapter is None:  # the first member loaded the model; the others share it
            first.adapter = job.adapter
            if runtime.compile:
                job.adapter.compile_denoiser(vae_decoder=True)
        output = output or job.settings.default_folder(sweep=True)
        if (output / SETTINGS_FILE).exists():
            raise UsageError(f"{output} is a sample folder; give -o a new folder for the sweep (it holds one sample "
                             f"folder per {setting}).")
        results.append(run_job(job, output / name, runtime.batch_size, runtime.progress))
        del job
    grid = None
    if distributed.current().main:
        folders = [Path(r.output) for r in results]
        shown = range(min(GRID_PROMPTS, len(first.input.prompts)))
        rows = [[open_image(m / image_name(p * options.num_per_prompt)) for m in folders] for p in shown]
        grid = output / "grid.png"
        with atomic_path(grid) as tmp:
            image_grid(rows, titles, [first.input.prompts[p] for p in shown]).save(tmp, format="PNG")
        write_sweep(output, setting, values, folders)
    return SweepResult(str(output), [r.output for r in results], sum(r.generated for r in results),
                       sum(r.skipped for r in results), str(grid) if grid else None)
