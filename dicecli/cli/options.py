"""Options shared by several commands, as `Annotated` aliases, and the choices they take.

Defaults shown in help come from the typed settings (`dicecli.settings`), so help and behaviour cannot
drift; "recipe" means the model's recipe may set it (`dice recipes`), "family" its family's default.
Nothing here imports torch: `dice --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, List, Optional

import typer

from dicecli.errors import UsageError
from dicecli.schedulers import SCHEDULERS
from dicecli.settings import ENHANCED_PARTS, FID_FEATURES, LOSSES, SampleConfig

Scheduler = Enum("Scheduler", {name: name for name in SCHEDULERS}, type=str)
Loss = Enum("Loss", {name: name for name in LOSSES}, type=str)
EnhancePart = Enum("EnhancePart", {name: name for name in ENHANCED_PARTS}, type=str)
FidFeatures = Enum("FidFeatures", {name.replace("-", "_"): name for name in FID_FEATURES}, type=str)


class Dtype(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def layered(config, name: str) -> str:
    """How a layered setting's default reads in help: the recipe's, else dicecli's."""
    return f"(default: the recipe's, else {config.default(name)})"


# Loading a model
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file.")]
OptionalModel = Annotated[Optional[str], typer.Option("--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file (default: the cache's model, else the enhancer's trained_on).")]
PromptModel = Annotated[Optional[str], typer.Option("--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file (default: the enhancer's trained_on).")]
EmbeddingOption = Annotated[Optional[List[str]], typer.Option("--embedding", metavar="FILE", help="A textual-inversion embedding (.safetensors, A1111 or diffusers format; repeat for several): its file name (or the token a diffusers file names) works as a word in prompts and negative prompts.")]
LoraOption = Annotated[Optional[List[str]], typer.Option("--lora", metavar="FILE[:SCALE]", help="A LoRA (.safetensors, kohya/A1111 or diffusers format; repeat for several), at SCALE (default 1), on the text encoders and the denoiser.")]
ClipSkipOption = Annotated[Optional[int], typer.Option("--clip-skip", metavar="N", help="Clip skip as A1111 counts it: the text encoder's output N-1 layers before its last (1: the model's usual output; 2: the penultimate layer, as many anime models ask). CLIP families only (default: the recipe's, else 1).")]
VaeOption = Annotated[Optional[str], typer.Option("--vae", help="Replacement VAE: a diffusers VAE folder or hub id, e.g. an fp16-fix SDXL VAE (default: the recipe's, else the model's own).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N.")]
DtypeOption = Annotated[Dtype, typer.Option("--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")]

# Reporting
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, notes or summary (for cron and scripts).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary.")]

# Enhancers and sampling (`sample`, `transfer`, `enhance`)
EnhancerOption = Annotated[Optional[str], typer.Option("--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships (docs/architecture.md, \"Plug-ins\").")]
SampleEnhancerOption = Annotated[Optional[str], typer.Option("--enhancer", "-e", help="Enhancer .safetensors from `dice distill`, the name of one a plug-in ships (docs/architecture.md, \"Plug-ins\"), or a distill work dir: each of its checkpoints into its own folder under -o, a curve `dice eval` plots (docs/analyses.md).")]
AlphaOption = Annotated[Optional[float], typer.Option("--alpha", help=f"Enhancer strength: c' = c + alpha * E(c, c_neg) {layered(SampleConfig, 'alpha')}.")]
EnhancePartOption = Annotated[Optional[EnhancePart], typer.Option("--enhance-part", help="Replace only this part of the embedding by the enhanced one: semantic (the prompt's tokens through end-of-text), padding (the rest), or all (default; the paper's Figure 7).")]
CfgOption = Annotated[float, typer.Option("--cfg", help="Guidance scale: 1 = unguided (one evaluation per step); >1 = CFG (two).")]
NegativeOption = Annotated[Optional[str], typer.Option("--negative", help="Negative prompt: CFG's, and the enhancer's second input (default: the cache's, else none).")]
EnhancerNegativeOption = Annotated[Optional[str], typer.Option("--negative", help="Negative prompt, the enhancer's second input (default: the cache's, else none).")]
PromptNegativeOption = Annotated[Optional[str], typer.Option("--negative", help="Negative prompt: CFG's (with --cfg above 1), and the enhancer's second input (default: none).")]
StepsOption = Annotated[Optional[int], typer.Option("--steps", help=f"Sampler steps {layered(SampleConfig, 'steps')}.")]
SchedulerOption = Annotated[Optional[Scheduler], typer.Option("--scheduler", help=f"Sampler {layered(SampleConfig, 'scheduler')}.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Image i uses seed + i, whatever the batch size.")]
SampleBatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Images per pipeline call.")]
HeightOption = Annotated[Optional[int], typer.Option("--height", help="Image height, a multiple of 8 (default: the recipe's, else the model's native size).")]
WidthOption = Annotated[Optional[int], typer.Option("--width", help="Image width, a multiple of 8 (default: the recipe's, else the model's native size).")]
PerPromptOption = Annotated[int, typer.Option("--num-per-prompt", min=1, help="Images per prompt.")]

# Evaluation
FidFeaturesOption = Annotated[FidFeatures, typer.Option("--fid-features", help="inception (clean-fid) or tiny-random (smoke tests).")]


def value(choice):
    """The plain value of an Enum choice (None stays None)."""
    return None if choice is None else choice.value


EnhancerArgument = Annotated[str, typer.Argument(metavar="ENHANCER", help="Enhancer .safetensors from `dice distill`, or the name of one a plug-in ships.")]


def comma_list(text: str | None, option: str) -> list[str] | None:
    """A comma-separated option's items (None: not given); an empty list is refused."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} is empty; give comma-separated values.")
    return items


def whole_number(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a whole number; give comma-separated step numbers (e.g. 1,10,20).") from None
