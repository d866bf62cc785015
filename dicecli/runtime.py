"""Device and precision selection (CUDA + bf16 where available, CPU + fp32 otherwise), and the `Runtime` a command
passes down: where its work runs and how it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from dicecli.errors import UsageError


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Runtime:
    """Where and how a command's work runs, resolved once in cli/: device, precision, batch size, and how the
    command reports (a progress bar on a terminal, one-line notes)."""

    device: torch.device
    dtype: torch.dtype
    batch_size: int | None = None  # None: the stage's own default (a recipe's, else dicecli's)
    progress: bool = False
    note: Callable[[str], None] = _silent
    compile: bool = False  # torch.compile the denoiser and the VAE decoder


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def select_device(name: str | None = None, local_rank: int | None = None) -> torch.device:
    """--device as a torch device; `local_rank` (one of several processes on a node) picks the GPU of `cuda`."""
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu.")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"This is process {local_rank} of its node, but the node shows only "
                             f"{torch.cuda.device_count()} GPUs; start at most that many processes per node.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def select_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype {name!r} is not known; use auto, fp32, bf16 or fp16.")
    return DTYPES[name]


def quiet_libraries() -> None:
    """Silence the libraries' own loading bars and info logs; dicecli reports progress itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # e.g. its retry warnings; dicecli says what failed in one sentence
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


# Activation memory of the VAE at full resolution, per pixel and per image, in elements: its outer blocks hold
# several 128-channel maps of the whole image at once. A floor, not a forecast: sizes above it cannot work.
VAE_ELEMENTS_PER_PIXEL = 4 * 128


def vae_floor_bytes(height: int, width: int, dtype: torch.dtype) -> int:
    """The least memory the VAE needs to encode or decode one image of height x width."""
    return height * width * VAE_ELEMENTS_PER_PIXEL * torch.tensor([], dtype=dtype).element_size()


def check_fits(height: int, width: int, device: torch.device, dtype: torch.dtype, what: str) -> None:
    """Refuse, before any weights load, an image size whose VAE pass cannot fit the device at all."""
    memory = device_memory(device)
    need = vae_floor_bytes(height, width, dtype)
    if memory and need > memory:
        where = "the GPU" if device.type == "cuda" else "this machine"
        raise UsageError(f"{what} ({width}x{height}) needs at least {need / 2**30:.0f} GiB for one image's VAE pass, "
                         f"more than {where}'s {memory / 2**30:.0f} GiB; use a smaller size.")


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory the device has in all: the GPU's, or this machine's (its cgroup limit where lower)."""
    import os

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = open(limit_file).read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total
