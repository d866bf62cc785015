"""Model sources and loading a model's components.

A model lives in one of four places, each a `ModelSource`: a built-in model (`dicecli.builtin.BuiltinSource`),
a local diffusers folder (`FolderSource`), a Hugging Face hub id (`HubSource`) or a single-file checkpoint
(`SingleFileSource`). A source loads a diffusers pipeline class from itself and reads one small config
file without touching weights; nothing above this module branches on where a model lives.

`Components` loads the named parts of a pipeline on first use and only those, so `dice encode` and
`dice enhance` never load the denoiser or the VAE. A replacement VAE (`--vae`, or a recipe's
`[source] vae`) takes the place of the pipeline's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from dicecli.errors import UsageError
from dicecli.hub import hub_file, hub_missing_message, offline
from dicecli.runtime import quiet_libraries


@dataclass(frozen=True)
class ModelSource(ABC):
    """Where a model's files are. `location`: the built-in name, folder, hub id or file."""

    location: str

    single_file = False  # config files can be read without the weights (single files have none beside them)

    @property
    def resolved(self) -> str:
        """The reference recorded in caches: where the model was found."""
        return self.location

    @property
    def local_path(self) -> Path | None:
        """The user's own files of this model (which no output may replace), if any."""
        return None

    @abstractmethod
    def load(self, pipeline_class, **kwargs):
        """The pipeline class loaded from this source (`kwargs`: from_pretrained arguments)."""

    @abstractmethod
    def config_file(self, name: str) -> Path:
        """One small config file of the model (e.g. `text_encoder/config.json`), never its weights."""


@dataclass(frozen=True)
class PipelineSource(ModelSource):
    """A pipeline object already in memory (the Python API): every component is there, nothing is loaded."""

    location: str

    def load(self, pipeline_class, **kwargs):
        raise UsageError(f"The pipeline {self.location} lacks a component dicecli needs; give a complete pipeline.")

    def config_file(self, name: str) -> Path:
        raise UsageError(f"The pipeline {self.location} is in memory; its config files are not read.")


@dataclass(frozen=True)
class FolderSource(ModelSource):
    """A local diffusers folder (model_index.json and one folder per component)."""

    @property
    def local_path(self) -> Path:
        return Path(self.location)

    def load(self, pipeline_class, **kwargs):
        return pipeline_class.from_pretrained(self.location, **kwargs)

    def config_file(self, name: str) -> Path:
        path = Path(self.location) / name
        if not path.is_file():
            raise UsageError(f"Model folder {self.location} has no {name}; check that it is a complete diffusers pipeline.")
        return path


@dataclass(frozen=True)
class HubSource(ModelSource):
    """A Hugging Face hub id: the local cache first; offline, one sentence on how to get it."""

    def load(self, pipeline_class, **kwargs):
        try:
            return pipeline_class.from_pretrained(self.location, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            if offline():
                raise UsageError(hub_missing_message(self.location)) from None
        return pipeline_class.from_pretrained(self.location, **kwargs)

    def config_file(self, name: str) -> Path:
        return Path(hub_file(self.location, name))


@dataclass(frozen=True)
class SingleFileSource(ModelSource):
    """An original-layout `.safetensors` checkpoint, as SD users keep community models, loaded with the diffusers
    config of its base model (`config`: a hub id or a local diffusers folder)."""

    config: str | None = None
    single_file = True

    @property
    def local_path(self) -> Path:
        return Path(self.location)

    def load(self, pipeline_class, **kwargs):
        config = self.config
        if config is None:
            raise UsageError(f"Checkpoint {self.location} needs a diffusers config; name its recipe or family.")
        if not Path(config).expanduser().is_dir():
            try:
                hub_file(config, "model_index.json")  # the config repo must be at hand, like any hub model
            except UsageError as error:
                raise UsageError(
                    f"Checkpoint {self.location} is built with the diffusers config of {config}, which is not "
                    f"available ({error}); or set `config` to a local diffusers folder in a recipe."
                ) from None
        return pipeline_class.from_single_file(self.location, config=config, local_files_only=offline(), **kwargs)

    def config_file(self, name: str) -> Path:
        """A config file of the diffusers config the checkpoint is loaded with (a local folder or a hub id)."""
        if self.config is None:
            raise UsageError(f"Checkpoint {self.location} needs a diffusers config; name its recipe or family.")
        folder = Path(self.config).expanduser()
        return folder / name if folder.is_dir() else Path(hub_file(self.config, name))


class PipelineLayout(Protocol):
    """What loading needs to know of a family's pipeline (a `FamilyAdapter` class says it)."""

    pipeline_class_name: str
    all_components: tuple[str, ...]  # every component of the pipeline; those not asked for are not loaded
    load_kwargs: dict


class Components:
    """The loaded parts of one model, on one device and in one dtype, all frozen."""

    def __init__(self, source: ModelSource, layout: "PipelineLayout", device: torch.device, dtype: torch.dtype,
                 vae: str | None = None, name: str = "", family: str = ""):
        self.source, self.pipeline_class_name, self.names = source, layout.pipeline_class_name, layout.all_components
        self.vae = vae  # a replacement VAE (folder or hub id)
        self.name, self.family = name or source.location, family  # the model as the user named it, for sentences
        self.device, self.dtype = device, dtype
        self.load_kwargs = dict(layout.load_kwargs)  # extra from_pretrained arguments
        self.modules: dict[str, object] = {}
        self.pipeline_config: dict = {}  # the pipeline's own settings (e.g. force_zeros_for_empty_prompt)

    @property
    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def __getitem__(self, name: str):
        self.require(name)
        return self.modules[name]

    def __setitem__(self, name: str, module) -> None:
        self.modules[name] = module

    def release(self, *names: str) -> None:
        """Free loaded components for good (they read as None; pipelines take None for a text encoder when
        they are given embeddings): dice distill frees the text encoders once the captions are encoded."""
        for name in names:
            self.modules[name] = None

    def require(self, *names: str) -> None:
        """Load the named components that are not loaded yet (and only those)."""
        missing = [n for n in names if n not in self.modules]
        if not missing:
            return
        separate_vae = "vae" in missing and self.vae is not None
        wanted = [n for n in missing if not (n == "vae" and separate_vae)]
        if wanted or not self.pipeline_config:
            pipe = self._load_pipeline(wanted)
            self.pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_")}
            for name in wanted:
                self._keep(name, getattr(pipe, name))
        if separate_vae:
            self._keep("vae", load_vae(self.vae, self.dtype))

    def _keep(self, name: str, module) -> None:
        if isinstance(module, torch.nn.Module):
            module.to(self.device)
            module.requires_grad_(False)
            module.eval()
        self.modules[name] = module

    def _load_pipeline(self, wanted: list[str]):
        quiet_libraries()
        skipped = {n: None for n in self.names if n not in wanted}
        kwargs = dict(dtype=self.dtype, **skipped, **self.load_kwargs)
        try:
            return self.source.load(self.pipeline_class, **kwargs)
        except (OSError, ValueError, EnvironmentError) as error:
            if isinstance(error, UsageError):
                raise
            raise UsageError(
                f"Model {self.name} could not be loaded ({first_line(error)}); check that it is a complete {self.family} model."
            ) from error


def load_vae(given: str, dtype: torch.dtype):
    """A replacement VAE (`--vae`): a diffusers AutoencoderKL folder or hub id (e.g. an fp16-fix VAE)."""
    from diffusers import AutoencoderKL

    quiet_libraries()
    path = Path(given).expanduser()
    try:
        if path.is_dir():
            return AutoencoderKL.from_pretrained(path, torch_dtype=dtype)
        if given.startswith((".", "/", "~")):
            raise UsageError(f"--vae {given} does not exist; give a diffusers VAE folder or a hub id.")
        try:
            return AutoencoderKL.from_pretrained(given, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError):
            if offline():
                raise UsageError(hub_missing_message(given)) from None
        return AutoencoderKL.from_pretrained(given, torch_dtype=dtype)
    except (OSError, ValueError) as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"--vae {given} could not be loaded ({first_line(error)}); give a diffusers AutoencoderKL folder or hub id.") from None


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
