"""Options shared by several commands, as `Annotated` aliases, and the choices they take."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from dicecli.sampling import SCHEDULERS

Scheduler = Enum("Scheduler", {name: name for name in SCHEDULERS}, type=str)


class Dtype(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Loss(str, Enum):
    l1 = "l1"
    l2 = "l2"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class FidFeatures(str, Enum):
    inception = "inception"
    tiny_random = "tiny-random"


# Loading a model
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file.")]
OptionalModel = Annotated[Optional[str], typer.Option("--model", "-m", help="Model [the cache's model, else the enhancer's trained_on].")]
VaeOption = Annotated[Optional[str], typer.Option("--vae", help="Replacement VAE: a diffusers VAE folder or hub id (e.g. an fp16-fix SDXL VAE) [recipe].")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N.")]
DtypeOption = Annotated[Dtype, typer.Option("--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")]

# Reporting
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary (for cron and scripts).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary.")]

# Enhancers and sampling (`sample`, `transfer`)
EnhancerOption = Annotated[Optional[str], typer.Option("--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships (README).")]
AlphaOption = Annotated[Optional[float], typer.Option("--alpha", help="Enhancer strength: c' = c + alpha * E(c, c_neg) [1].")]
CfgOption = Annotated[float, typer.Option("--cfg", help="Guidance scale: 1 = unguided (one evaluation per step); >1 = CFG (two).")]
NegativeOption = Annotated[Optional[str], typer.Option("--negative", help="Negative prompt (CFG, and the enhancer's second input).")]
StepsOption = Annotated[Optional[int], typer.Option("--steps", help="Sampler steps [recipe, 20].")]
SchedulerOption = Annotated[Optional[Scheduler], typer.Option("--scheduler", help="Sampler [recipe, dpmsolver++].")]
SeedOption = Annotated[int, typer.Option("--seed", help="Image i uses seed + i, whatever the batch size.")]
SampleBatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Images per pipeline call.")]
HeightOption = Annotated[Optional[int], typer.Option("--height", help="Image height, a multiple of 8 [recipe, model's native size].")]
WidthOption = Annotated[Optional[int], typer.Option("--width", help="Image width, a multiple of 8 [recipe, model's native size].")]
PerPromptOption = Annotated[int, typer.Option("--num-per-prompt", min=1, help="Images per prompt.")]

# Evaluation
FidFeaturesOption = Annotated[FidFeatures, typer.Option("--fid-features", help="inception (clean-fid) or tiny-random (smoke tests).")]


def value(choice):
    """The plain value of an Enum choice (None stays None)."""
    return None if choice is None else choice.value
