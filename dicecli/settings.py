"""Settings, resolved once per command: command line > recipe > family default > dicecli default.

Each stage's dicecli defaults are written here and nowhere else; a family adapter's
`defaults` and a recipe's `[stage]` table override them, and options given on the command
line override both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dicecli.errors import UsageError
from dicecli.families import adapter_class
from dicecli.recipes import Recipe

SAMPLE_DEFAULTS = {"scheduler": "dpmsolver++", "steps": 20, "alpha": 1.0, "cfg": 1.0}  # the paper's sampler
ENCODE_DEFAULTS = {"batch_size": 64, "image_batch_size": 16}


LR_SCHEDULES = ("constant", "cosine", "linear")
TIMESTEP_SAMPLING = ("uniform", "logit-normal")


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (the reference recipe's values as defaults)."""

    steps: int = 8000
    batch_size: int = 128  # images per optimizer update, over all processes
    grad_accum: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    guidance_scale: float = 5.0
    loss: str = "l1"
    negative_prompts: str = "builtin"  # builtin | none | path to a .txt file
    null_share: float = 0.2  # share of each batch that uses the null ("") prompt as c_neg
    lr_schedule: str = "constant"  # constant | cosine | linear (diffusers.optimization), after warmup_steps
    warmup_steps: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the enhancer's weights; 0: off
    timesteps: str = "uniform"  # uniform | logit-normal: how t is drawn for the loss
    seed: int = 0
    resolution: int = 512
    checkpoint_every: int = 500
    compile: bool = False
    validate: bool = True
    validation_steps: int = 20

    def check(self, world: int) -> int:
        """Validate, and return the per-process micro-batch size."""
        if self.loss not in ("l1", "l2"):
            raise UsageError(f"--loss {self.loss!r} is not known; use l1 or l2.")
        if not 0 <= self.null_share <= 1:
            raise UsageError("--null-share must be between 0 and 1.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"--lr-schedule {self.lr_schedule!r} is not known; use one of {', '.join(LR_SCHEDULES)}.")
        if self.timesteps not in TIMESTEP_SAMPLING:
            raise UsageError(f"--timesteps {self.timesteps!r} is not known; use one of {', '.join(TIMESTEP_SAMPLING)}.")
        if not 0 <= self.ema < 1:
            raise UsageError(f"--ema {self.ema} must be a decay in [0, 1), e.g. 0.999 (0 turns it off).")
        if not 0 <= self.warmup_steps < self.steps:
            raise UsageError(f"--warmup-steps {self.warmup_steps} must be at least 0 and below --steps {self.steps}.")
        for name in ("lr", "guidance_scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {value} must be a positive number.")
        if self.resolution < 8 or self.resolution % 8:
            raise UsageError(f"--resolution {self.resolution} must be a positive multiple of 8.")
        per_update = world * self.grad_accum
        if self.batch_size % per_update:
            raise UsageError(
                f"--batch-size {self.batch_size} must be divisible by --grad-accum x processes ({per_update}); "
                f"try --batch-size {max(per_update, self.batch_size // per_update * per_update)}."
            )
        if self.steps < 1 or self.checkpoint_every < 1:
            raise UsageError("--steps and --checkpoint-every must be at least 1.")
        return self.batch_size // per_update


def _layers(stage: str, family: str, recipe: Recipe | None, base: dict) -> dict[str, Any]:
    merged = dict(base)
    merged.update(adapter_class(family).defaults.get(stage, {}))
    if recipe is not None:
        merged.update(recipe.defaults(stage))
    return merged


def _given(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def sample_settings(family: str, recipe: Recipe | None, **given) -> dict[str, Any]:
    """steps, scheduler, alpha, cfg, height, width (None: the model's native size)."""
    merged = _layers("sample", family, recipe, {**SAMPLE_DEFAULTS, "height": None, "width": None})
    merged.update(_given(given))
    adapter = adapter_class(family)
    if merged.get("steps") is not None and merged["steps"] < adapter.min_sampling_steps:
        raise UsageError(f"--steps {merged['steps']} is too few for {family} models: {adapter.min_sampling_steps_reason}; "
                         f"use --steps {adapter.min_sampling_steps} or more.")
    return merged


def encode_settings(family: str, recipe: Recipe | None, **given) -> dict[str, Any]:
    merged = _layers("encode", family, recipe, ENCODE_DEFAULTS)
    if recipe is not None and "resolution" not in merged:
        height = recipe.defaults("sample").get("height")
        if height:
            merged["resolution"] = height
    merged.setdefault("resolution", adapter_class(family).defaults.get("distill", {}).get("resolution", 512))
    merged.update(_given(given))
    return merged


def distill_settings(family: str, recipe: Recipe | None, **given) -> tuple[DistillConfig, str | None]:
    """The run's DistillConfig and its training data (`--data`, else the recipe's)."""
    defaults = {f.name: f.default for f in fields(DistillConfig)}
    merged = dict(defaults)
    merged.update(adapter_class(family).defaults.get("distill", {}))
    recipe_values = recipe.defaults("distill") if recipe else {}
    if recipe is not None and "resolution" not in recipe_values and recipe.defaults("sample").get("height"):
        merged["resolution"] = recipe.defaults("sample")["height"]  # train at the size the model samples
    for key, value in recipe_values.items():
        if key in defaults:
            merged[key] = _checked(recipe, key, value, defaults[key])
    data = given.pop("data", None) or recipe_values.get("data")
    merged.update(_given(given))
    return DistillConfig(**merged), data


def _checked(recipe: Recipe, key: str, value, default):
    """A recipe value of the right type (ints are accepted where floats are expected)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UsageError(f"Recipe {recipe.path}: [distill] {key} = {value!r} must be a {expected.__name__}; fix the file.")
    return value


def config_dict(config: DistillConfig) -> dict:
    return asdict(config)
