"""The family adapter interface: everything that differs between SD1.5, SDXL and PixArt-α.

Callers (encode, distill, sample) only talk to `FamilyAdapter`. A family says how
it tokenizes and encodes prompts into a `Conditioning`, how its denoiser is called
with one, and which diffusers pipeline class it is. Components load lazily, so
`dice encode`/`dice enhance` never load the denoiser or the VAE.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import torch

from dicecli.errors import UsageError
from dicecli.recipes import ModelRef, hub_missing_message


@dataclass
class Conditioning:
    """A batch of text conditioning, as the denoiser consumes it."""

    prompt_embeds: torch.Tensor  # [N, T, D]
    eos_index: torch.Tensor  # [N] position of the first end-of-text token
    pooled_prompt_embeds: torch.Tensor | None = None  # [N, P] (SDXL)
    attention_mask: torch.Tensor | None = None  # [N, T] (PixArt-α)

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def map(self, fn) -> "Conditioning":
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None})

    def to(self, device=None, dtype=None) -> "Conditioning":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return self.map(move)

    def __getitem__(self, index) -> "Conditioning":
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        first = items[0]
        return replace(first, **{
            f.name: torch.cat([getattr(i, f.name) for i in items]) for f in fields(first) if getattr(first, f.name) is not None
        })

    def with_embeds(self, prompt_embeds: torch.Tensor) -> "Conditioning":
        """The same conditioning with another token sequence (the enhanced one)."""
        return replace(self, prompt_embeds=prompt_embeds)


@dataclass
class EncodedPrompts:
    conditioning: Conditioning
    truncated: int  # how many prompts were longer than the token limit


class FamilyAdapter(ABC):
    """Loads one model of a family and exposes the operations DICE needs."""

    family: ClassVar[str]
    pipeline_class_name: ClassVar[str]
    denoiser_name: ClassVar[str]  # "unet" or "transformer"
    text_components: ClassVar[tuple[str, ...]]
    all_components: ClassVar[tuple[str, ...]]

    def __init__(self, ref: ModelRef, device: torch.device, dtype: torch.dtype):
        self.ref = ref
        self.device = device
        self.dtype = dtype
        self.components: dict[str, object] = {}

    # -- loading ---------------------------------------------------------------
    @property
    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def require(self, *names: str) -> None:
        """Load the named pipeline components that are not loaded yet (and only those)."""
        missing = [n for n in names if n not in self.components]
        if not missing:
            return
        pipe = self._load_pipeline(missing)
        for name in missing:
            module = getattr(pipe, name)
            if isinstance(module, torch.nn.Module):
                module.to(self.device)
                module.requires_grad_(False)
                module.eval()
            self.components[name] = module

    def _load_pipeline(self, wanted: list[str]):
        quiet_libraries()
        skipped = {n: None for n in self.all_components if n not in wanted}
        kwargs = dict(dtype=self.dtype, **skipped, **self.extra_load_kwargs())
        ref = self.ref
        try:
            if ref.kind == "builtin":
                from dicecli.builtin import ensure_builtin

                return self.pipeline_class.from_pretrained(ensure_builtin(ref.location), **kwargs)
            if ref.kind == "folder":
                return self.pipeline_class.from_pretrained(ref.location, **kwargs)
            if ref.kind == "hub":
                return self._from_hub(kwargs)
            return self._from_single_file(kwargs)
        except (OSError, ValueError, EnvironmentError) as error:
            if isinstance(error, UsageError):
                raise
            raise UsageError(f"Model {ref.given} could not be loaded ({_first_line(error)}); check that it is a complete {self.family} model.") from error

    def _from_hub(self, kwargs):
        from huggingface_hub import constants

        try:
            return self.pipeline_class.from_pretrained(self.ref.location, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            if constants.HF_HUB_OFFLINE:
                raise UsageError(hub_missing_message(self.ref.location)) from None
        return self.pipeline_class.from_pretrained(self.ref.location, **kwargs)

    def _from_single_file(self, kwargs):
        from huggingface_hub import constants

        config = self.ref.config
        if config is None:
            raise UsageError(f"Checkpoint {self.ref.location} needs a diffusers config; name its recipe or family.")
        if not Path(config).expanduser().is_dir():
            from dicecli.recipes import hub_file

            try:
                hub_file(config, "model_index.json")  # the config repo must be at hand, like any hub model
            except UsageError as error:
                raise UsageError(
                    f"Checkpoint {self.ref.location} is built with the diffusers config of {config}, which is not "
                    f"available ({error}); or set `config` to a local diffusers folder in a recipe."
                ) from None
        return self.pipeline_class.from_single_file(
            self.ref.location, config=config, local_files_only=bool(constants.HF_HUB_OFFLINE), **kwargs
        )

    def extra_load_kwargs(self) -> dict:
        return {}

    # -- shape without weights --------------------------------------------------------
    single_file_shape: ClassVar[tuple[int, int]] = (0, 0)  # (context_dim, tokens) of the family's base model

    @classmethod
    def embedding_shape(cls, ref: ModelRef) -> tuple[int, int]:
        """(context_dim, tokens) read from config files only, so compatibility is checked before any weights load."""
        if ref.kind == "single_file":
            return cls.single_file_shape
        encoder = json.loads(_config_file(ref, "text_encoder/config.json").read_text())
        tokenizer = json.loads(_config_file(ref, "tokenizer/tokenizer_config.json").read_text())
        return cls.context_dim_from_config(ref, encoder), int(tokenizer.get("model_max_length", 77))

    @classmethod
    def context_dim_from_config(cls, ref: ModelRef, encoder_config: dict) -> int:
        return int(encoder_config["hidden_size"])

    # -- components ----------------------------------------------------------------
    def __getattr__(self, name: str):
        if name in type(self).all_components:
            self.require(name)
            return self.components[name]
        raise AttributeError(name)

    def compile_denoiser(self, vae_decoder: bool = False) -> None:
        """torch.compile the denoiser (and the VAE decoder) in place; the first calls are slow while it compiles."""
        self.require(self.denoiser_name)
        self.components[self.denoiser_name] = torch.compile(self.components[self.denoiser_name])
        if vae_decoder:
            self.require("vae")
            self.components["vae"].decoder = torch.compile(self.components["vae"].decoder)

    @property
    def denoiser(self) -> torch.nn.Module:
        self.require(self.denoiser_name)
        return self.components[self.denoiser_name]

    @property
    def prediction_type(self) -> str:
        self.require("scheduler")
        return self.components["scheduler"].config.get("prediction_type", "epsilon")

    # -- text --------------------------------------------------------------------
    @property
    @abstractmethod
    def tokens(self) -> int:
        """Sequence length T of prompt embeddings."""

    @property
    @abstractmethod
    def context_dim(self) -> int:
        """Width D of prompt embeddings."""

    @abstractmethod
    def encode(self, prompts: list[str]) -> EncodedPrompts:
        """Encode prompts exactly as the family's diffusers pipeline does (no CFG duplication)."""

    def text_encoder_fingerprint(self) -> str:
        """A dtype-independent hash of the text encoder(s) and tokenizer vocabulary.

        Values are rounded to bf16 and sub-sampled, so the same weights loaded in fp32
        or bf16 give the same fingerprint and billion-parameter encoders hash quickly.
        """
        digest = hashlib.sha256()
        for name in self.text_components:
            self.require(name)
            module = self.components[name]
            if isinstance(module, torch.nn.Module):
                for key, tensor in sorted(module.state_dict().items()):
                    flat = tensor.detach().flatten()
                    flat = flat[:: max(1, flat.numel() // 65536)].to("cpu", torch.bfloat16).view(torch.int16)
                    digest.update(f"{name}.{key}{tuple(tensor.shape)}".encode())
                    digest.update(flat.numpy().tobytes())
            else:  # a tokenizer
                digest.update(repr(sorted(module.get_vocab().items())).encode())
        return digest.hexdigest()[:16]

    # -- sampling ------------------------------------------------------------------
    def pipeline(self, scheduler=None):
        """The family's diffusers pipeline around the loaded components (denoiser, VAE, text encoder)."""
        self.require(*self.pipeline_components)
        parts = {name: self.components[name] for name in self.pipeline_components}
        if scheduler is not None:
            parts["scheduler"] = scheduler
        pipe = self.pipeline_class(**parts, **self.pipeline_extra_kwargs())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipeline_components: ClassVar[tuple[str, ...]] = ()

    def default_size(self) -> int:
        """Native image size: the denoiser's sample size times the VAE's downsampling."""
        self.require("vae", self.denoiser_name)
        vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return int(self.denoiser.config.sample_size) * vae_scale

    def pipeline_extra_kwargs(self) -> dict:
        return {}

    def pipeline_embeds(self, cond: Conditioning, negative: Conditioning | None) -> dict:
        """Pipeline call arguments that pass precomputed embeddings instead of prompts."""
        kwargs = {"prompt_embeds": cond.prompt_embeds.to(self.device, self.dtype)}
        if negative is not None:
            kwargs["negative_prompt_embeds"] = negative.prompt_embeds.to(self.device, self.dtype)
        return kwargs

    # -- denoising ----------------------------------------------------------------
    @abstractmethod
    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """One denoiser evaluation: the model's raw prediction (epsilon or v)."""


def _config_file(ref: ModelRef, name: str) -> Path:
    """One small config file of a model (builtin, folder or hub), never its weights."""
    from dicecli.recipes import hub_file

    if ref.kind == "builtin":
        from dicecli.builtin import ensure_builtin

        return ensure_builtin(ref.location) / name
    if ref.kind == "folder":
        path = Path(ref.location) / name
        if not path.is_file():
            raise UsageError(f"Model folder {ref.location} has no {name}; check that it is a complete diffusers pipeline.")
        return path
    return Path(hub_file(ref.location, name))


def quiet_libraries() -> None:
    """Silence the libraries' own loading bars and info logs; dicecli reports progress itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
