"""LoRAs (`--lora FILE[:SCALE]`): the files SD users keep for styles and characters, read from safetensors only (never
a pickle), in any layout diffusers' `load_lora_weights` reads (kohya/A1111, diffusers/peft). Loading them into the
model is the pipeline's own `load_lora_weights` and `set_adapters` (`FamilyAdapter.apply_loras`); this module
only parses the option and reads the file."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dicecli.errors import UsageError

PICKLES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


@dataclass(frozen=True)
class LoRA:
    path: Path
    scale: float
    tensors: dict[str, torch.Tensor] = field(repr=False)
    sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def record(self) -> dict:
        """What caches, enhancers and sample folders record of it."""
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256, "scale": self.scale}


def parse_lora(spec: str) -> tuple[Path, float]:
    """`FILE` or `FILE:SCALE` (scale 1 when not given; a file whose own name holds a colon is taken whole)."""
    path, _, tail = spec.rpartition(":")
    if not path or Path(spec).is_file():
        return Path(spec), 1.0
    try:
        scale = float(tail)
    except ValueError:
        raise UsageError(f"--lora {spec}: the scale after the last ':' must be a number (e.g. --lora style.safetensors:0.8)."
                         ) from None
    if not math.isfinite(scale):
        raise UsageError(f"--lora {spec}: the scale must be a finite number (1 is the LoRA as trained).")
    return Path(path), scale


def read_lora(spec: str) -> LoRA:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path, scale = parse_lora(spec)
    if not path.is_file():
        raise UsageError(f"--lora {path} does not exist; give a LoRA .safetensors file (FILE or FILE:SCALE).")
    if path.suffix.lower() in PICKLES:
        raise UsageError(f"--lora {path} is a pickle ({path.suffix}), which dicecli never loads (it can run code); "
                         "use the LoRA's .safetensors version, or convert it once in a trusted environment.")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"--lora {path} is not a readable .safetensors file ({error}).") from None
    if not any("lora" in key for key in tensors):
        raise UsageError(f"--lora {path} holds no LoRA weights; give a LoRA file (kohya/A1111 or diffusers format).")
    return LoRA(path, scale, tensors, hashlib.sha256(path.read_bytes()).hexdigest())
