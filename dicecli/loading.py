"""Loading a model's components: builtin / local folder / hub id / single-file checkpoint.

`Components` loads the named parts of a diffusers pipeline on first use and only those,
so `dice encode` and `dice enhance` never load the denoiser or the VAE. A model reference's
`vae` (`--vae`, or a recipe's `[source] vae`) replaces the pipeline's own VAE.
`config_file` reads one small config file of a model without touching its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dicecli.errors import UsageError
from dicecli.hub import hub_file, hub_missing_message, offline
from dicecli.runtime import quiet_libraries

if TYPE_CHECKING:
    from dicecli.refs import ModelRef


class Components:
    """The loaded parts of one model, on one device and in one dtype, all frozen."""

    def __init__(self, ref: "ModelRef", pipeline_class_name: str, names: tuple[str, ...], device: torch.device,
                 dtype: torch.dtype, load_kwargs: dict | None = None):
        self.ref, self.pipeline_class_name, self.names = ref, pipeline_class_name, names
        self.device, self.dtype = device, dtype
        self.load_kwargs = load_kwargs or {}
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

    def require(self, *names: str) -> None:
        """Load the named components that are not loaded yet (and only those)."""
        missing = [n for n in names if n not in self.modules]
        if not missing:
            return
        separate_vae = "vae" in missing and self.ref.vae is not None
        wanted = [n for n in missing if not (n == "vae" and separate_vae)]
        if wanted or not self.pipeline_config:
            pipe = self._load_pipeline(wanted)
            self.pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_")}
            for name in wanted:
                self._keep(name, getattr(pipe, name))
        if separate_vae:
            self._keep("vae", load_vae(self.ref.vae, self.dtype))

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
            raise UsageError(
                f"Model {ref.given} could not be loaded ({first_line(error)}); check that it is a complete {ref.family} model."
            ) from error

    def _from_hub(self, kwargs):
        try:
            return self.pipeline_class.from_pretrained(self.ref.location, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            if offline():
                raise UsageError(hub_missing_message(self.ref.location)) from None
        return self.pipeline_class.from_pretrained(self.ref.location, **kwargs)

    def _from_single_file(self, kwargs):
        config = self.ref.config
        if config is None:
            raise UsageError(f"Checkpoint {self.ref.location} needs a diffusers config; name its recipe or family.")
        if not Path(config).expanduser().is_dir():
            try:
                hub_file(config, "model_index.json")  # the config repo must be at hand, like any hub model
            except UsageError as error:
                raise UsageError(
                    f"Checkpoint {self.ref.location} is built with the diffusers config of {config}, which is not "
                    f"available ({error}); or set `config` to a local diffusers folder in a recipe."
                ) from None
        return self.pipeline_class.from_single_file(self.ref.location, config=config, local_files_only=offline(), **kwargs)


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


def config_file(ref: "ModelRef", name: str) -> Path:
    """One small config file of a model (builtin, folder or hub), never its weights."""
    if ref.kind == "builtin":
        from dicecli.builtin import ensure_builtin

        return ensure_builtin(ref.location) / name
    if ref.kind == "folder":
        path = Path(ref.location) / name
        if not path.is_file():
            raise UsageError(f"Model folder {ref.location} has no {name}; check that it is a complete diffusers pipeline.")
        return path
    return Path(hub_file(ref.location, name))


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
