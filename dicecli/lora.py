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
    from dicecli.files import read_safetensors

    path, scale = parse_lora(spec)
    tensors = read_safetensors(path, "--lora", "LoRA")
    if not any("lora" in key for key in tensors):
        raise UsageError(f"--lora {path} holds no LoRA weights; give a LoRA file (kohya/A1111 or diffusers format).")
    return LoRA(path, scale, tensors, hashlib.sha256(path.read_bytes()).hexdigest())
