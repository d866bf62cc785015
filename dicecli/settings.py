"""Typed settings for every stage, resolved once: command line > recipe > model config > family > dicecli.

Each stage's settings are one dataclass; its field defaults are dicecli's defaults, written here and
nowhere else (the command line's help shows them from here). `resolve` layers a family adapter's
`defaults[stage]`, then the recipe's `[stage]` table (every value type-checked, unknown keys refused),
then the options given on the command line, and checks the result.

This module imports neither torch nor the families at import time, so `dice --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from dicecli.errors import UsageError

LR_SCHEDULES = ("constant", "cosine", "linear")
TIMESTEP_SAMPLING = ("uniform", "logit-normal")
LOSSES = ("l1", "l2")
FID_FEATURES = ("inception", "tiny-random")
# Which part of c an enhancer replaces (the paper's Figure 7): every token, the prompt's own tokens through the
# end-of-text token, or the padding after it (`dicecli.method.apply_enhancer`).
ENHANCED_PARTS = ("all", "semantic", "padding")

DISTILL_SEED_LIMIT = 2**32  # (seed * 1_000_003 + step) * 131 + micro must stay below the generator's 2**64

RESUME = {"resume": True}  # a distill setting a checkpoint must have been made with to be resumed
RECORD = {"record": True}  # a distill setting the enhancer file records in its metadata
BOTH = {**RESUME, **RECORD}


@dataclass
class StageConfig:
    """Base of the stage settings: the layering, type checks and validation they share."""

    stage: ClassVar[str]

    @classmethod
    def resolve(cls, family: str | None, recipe=None, model: dict | None = None, **given):
        """Settings for a model of `family` with `recipe` (a `dicecli.recipes.Recipe` or None); `model` holds what
        the model's own config files say (e.g. its native resolution), between the family's and the recipe's;
        `given` holds the command line's options (None: not given)."""
        values: dict[str, Any] = {}
        if family is not None:
            from dicecli.families import adapter_class

            values.update(cls.checked(adapter_class(family).defaults.get(cls.stage, {}), f"family {family}"))
        values.update({k: v for k, v in (model or {}).items() if k in {f.name for f in fields(cls)}})
        if recipe is not None:
            values.update(cls.from_recipe(recipe))
        values.update({k: v for k, v in given.items() if v is not None})
        settings = cls(**values)
        settings.check(family)
        return settings

    @classmethod
    def from_recipe(cls, recipe) -> dict[str, Any]:
        return cls.checked(recipe.stages.get(cls.stage, {}), f"Recipe {recipe.path}: [{cls.stage}]")

    @classmethod
    def checked(cls, table: dict, where: str) -> dict[str, Any]:
        """The table's values, each of its field's type (ints accepted for floats, lists for tuples)."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        out = {}
        for key, value in table.items():
            if key not in known:
                raise UsageError(f"{where} {key} is not a {cls.stage} setting; use one of {', '.join(sorted(known))}.")
            out[key] = _of_type(value, hints[key], f"{where} {key} = {value!r}")
        return out

    def check(self, family: str | None) -> None:
        """Refuse values no library would accept, in one sentence naming the option."""

    @classmethod
    def default(cls, name: str):
        """dicecli's own default of a setting (for help text)."""
        return next(f.default for f in fields(cls) if f.name == name)


def _of_type(value, hint, what: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool) and isinstance(value, origin):
            return value
    names = " or ".join((typing.get_origin(o) or o).__name__ for o in options if o is not type(None))
    raise UsageError(f"{what} must be a {names}; fix the file.")


def check_choice(option: str, value: str, choices) -> None:
    """The one refusal of a name that is not one of an option's choices (schedulers, parts, losses, FID features...)."""
    if value not in choices:
        raise UsageError(f"{option} {value!r} is not known; use one of {', '.join(choices)}.")


def check_multiple_of_8(option: str, value: int | None) -> None:
    """Image sizes: positive multiples of 8 (the VAE's downsampling), the one check for every size option."""
    if value is not None and (value < 8 or value % 8):
        raise UsageError(f"{option} {value} must be a positive multiple of 8 (e.g. 512).")


@dataclass
class EncodeConfig(StageConfig):
    stage: ClassVar[str] = "encode"
    batch_size: int = 64  # prompts per text-encoder call
    image_batch_size: int = 16  # images per VAE call (--images)
    resolution: int | None = None  # --images: the recipe's sample height, else the family's training size

    @classmethod
    def resolve(cls, family: str | None, recipe=None, model: dict | None = None, **given):
        settings = super().resolve(family, recipe, model, **given)
        if settings.resolution is None:  # latents at the size distill trains at
            settings.resolution = DistillConfig.resolve(family, recipe, model).resolution
        return settings

    def check(self, family: str | None) -> None:
        check_multiple_of_8("--resolution", self.resolution)


@dataclass
class SampleConfig(StageConfig):
    """How images are sampled (`dice sample`, `dice transfer`, and the sampling step of other commands)."""

    stage: ClassVar[str] = "sample"
    scheduler: str = "dpmsolver++"  # the paper's sampler
    steps: int = 20
    alpha: float = 1.0  # enhancer strength
    cfg: float = 1.0
    height: int | None = None  # None: the model's native size
    width: int | None = None

    def check(self, family: str | None) -> None:
        from dicecli.schedulers import SCHEDULERS

        check_choice("--scheduler", self.scheduler, SCHEDULERS)
        if not math.isfinite(self.cfg) or self.cfg < 1:
            raise UsageError(f"--cfg {self.cfg} must be a number of at least 1 (1 = unguided, one model evaluation per step).")
        if not math.isfinite(self.alpha):
            raise UsageError(f"--alpha {self.alpha} must be a finite number (1 = the enhancer as trained).")
        check_multiple_of_8("--height", self.height)
        check_multiple_of_8("--width", self.width)
        if self.steps < 1:
            raise UsageError(f"--steps {self.steps} must be at least 1.")
        if family is not None:
            from dicecli.families import adapter_class

            adapter = adapter_class(family)
            if self.steps < adapter.min_sampling_steps:
                raise UsageError(f"--steps {self.steps} is too few for {family} models: {adapter.min_sampling_steps_reason}; "
                                 f"use --steps {adapter.min_sampling_steps} or more.")


@dataclass(frozen=True)
class SampleOptions:
    """What a command line says about sampling, resolved once in cli/ and passed down whole: the model, the
    enhancer and how it is applied, and how images are made. None: not given, so the recipe's value or
    dicecli's (`SampleConfig.resolve` layers them; `Prepared` resolves the strength and negative prompt)."""

    model: str | None = None
    enhancer: str | None = None
    alpha: float | None = None
    part: str | None = None  # `ENHANCED_PARTS`
    negative: str | None = None
    vae: str | None = None
    clip_skip: int | None = None  # A1111's Clip skip (`FamilyAdapter.checked_clip_skip`); None: the recipe's, else 1
    embeddings: tuple[str, ...] = ()  # textual-inversion embedding files (--embedding)
    loras: tuple[str, ...] = ()  # LoRA files, FILE or FILE:SCALE (--lora)
    cfg: float = 1.0
    steps: int | None = None
    scheduler: str | None = None
    height: int | None = None
    width: int | None = None
    seed: int = 0
    num_per_prompt: int = 1

    def check(self) -> None:
        """The numbers, refused before any file is read (the recipe's are checked when they are layered in)."""
        SampleConfig(cfg=self.cfg, alpha=1.0 if self.alpha is None else self.alpha, height=self.height,
                     width=self.width, steps=1 if self.steps is None else self.steps).check(None)

    def config(self, family: str | None, recipe=None) -> SampleConfig:
        """These options over the recipe's [sample] table and the family's defaults."""
        return SampleConfig.resolve(family, recipe, steps=self.steps, scheduler=self.scheduler, cfg=self.cfg,
                                    height=self.height, width=self.width)


@dataclass
class DistillConfig(StageConfig):
    """Everything that determines a distillation run (the reference recipe's values as defaults).

    Fields marked RESUME must match for `--resume`; fields marked RECORD are written into the enhancer
    file's metadata (docs/formats.md, "Enhancer file")."""

    stage: ClassVar[str] = "distill"
    steps: int = 8000
    batch_size: int = field(default=128, metadata=BOTH)  # images per optimizer update, over all processes
    grad_accum: int = field(default=1, metadata=RESUME)
    lr: float = field(default=2e-4, metadata=BOTH)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    guidance_scale: float = field(default=5.0, metadata=BOTH)
    loss: str = field(default="l1", metadata=BOTH)
    negative_prompts: str = field(default="builtin", metadata=RESUME)  # builtin | none | path to a .txt file
    null_share: float = field(default=0.2, metadata=BOTH)  # share of each batch that uses the null ("") prompt as c_neg
    lr_schedule: str = field(default="constant", metadata=BOTH)  # constant | cosine | linear, after warmup_steps
    warmup_steps: int = field(default=0, metadata=BOTH)
    ema: float = field(default=0.0, metadata=BOTH)  # decay of an exponential moving average of the weights; 0: off
    timesteps: str = field(default="uniform", metadata=BOTH)  # uniform | logit-normal: how t is drawn for the loss
    seed: int = field(default=0, metadata=BOTH)
    resolution: int = field(default=512, metadata=RESUME)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # the newest checkpoints kept; 0: every one (to score quality over training)
    compile: bool = False
    validate: bool = True
    validation_steps: int = 20
    data: str | None = None  # training data (--data), from the recipe when not given

    @classmethod
    def from_recipe(cls, recipe) -> dict[str, Any]:
        values = super().from_recipe(recipe)
        height = recipe.stages.get("sample", {}).get("height")
        if "resolution" not in values and height:
            values["resolution"] = height  # train at the size the model samples
        return values

    def check(self, family: str | None = None) -> None:
        check_choice("--loss", self.loss, LOSSES)
        if not 0 <= self.null_share <= 1:
            raise UsageError("--null-share must be between 0 and 1.")
        check_choice("--lr-schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("--timesteps", self.timesteps, TIMESTEP_SAMPLING)
        if not 0 <= self.ema < 1:
            raise UsageError(f"--ema {self.ema} must be a decay in [0, 1), e.g. 0.999 (0 turns it off).")
        if not 0 <= self.warmup_steps < self.steps:
            raise UsageError(f"--warmup-steps {self.warmup_steps} must be at least 0 and below --steps {self.steps}.")
        for name in ("lr", "guidance_scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} {value} must be a positive number.")
        check_multiple_of_8("--resolution", self.resolution)
        if self.steps < 1 or self.checkpoint_every < 1:
            raise UsageError("--steps and --checkpoint-every must be at least 1.")
        if self.keep_checkpoints < 0:
            raise UsageError(f"--keep-checkpoints {self.keep_checkpoints} must be at least 0 (0 keeps every one).")
        if not 0 <= self.seed < DISTILL_SEED_LIMIT:
            raise UsageError(f"--seed {self.seed} must be between 0 and {DISTILL_SEED_LIMIT - 1} (each step's generator is "
                             "seeded from it and the step number).")

    def micro_batch(self, world: int) -> int:
        """The per-process micro-batch size for `world` processes."""
        per_update = world * self.grad_accum
        if self.batch_size % per_update:
            raise UsageError(
                f"--batch-size {self.batch_size} must be divisible by --grad-accum x processes ({per_update}); "
                f"try --batch-size {max(per_update, self.batch_size // per_update * per_update)}."
            )
        return self.batch_size // per_update

    def marked(self, mark: str) -> dict[str, Any]:
        """The settings marked RESUME or RECORD, by name (tuples as lists, as JSON keeps them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get(mark)}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig(StageConfig):
    stage: ClassVar[str] = "eval"
    clip_model: str = "laion/CLIP-ViT-g-14-laion2B-s12B-b42K"  # the reference evaluation's CLIP score model
    aesthetic_clip: str = "openai/clip-vit-large-patch14"  # the LAION aesthetic predictor's backbone
    fid_features: str = "inception"

    def check(self, family: str | None = None) -> None:
        check_choice("--fid-features", self.fid_features, FID_FEATURES)


@dataclass
class EnhanceConfig(StageConfig):
    """`dice enhance` (its strength comes from the [sample] settings, as when sampling with --enhancer)."""

    stage: ClassVar[str] = "enhance"
    batch_size: int = 64  # prompts per batch


STAGE_CONFIGS = {cls.stage: cls for cls in (EncodeConfig, DistillConfig, EnhanceConfig, SampleConfig, EvalConfig)}
