"""One adapter per model family (DESIGN §4)."""

from __future__ import annotations

import torch

from dicecli.errors import UsageError
from dicecli.families.base import Conditioning, EncodedPrompts, FamilyAdapter
from dicecli.families.sd15 import SD15Adapter
from dicecli.recipes import ModelRef

ADAPTERS: dict[str, type[FamilyAdapter]] = {"sd15": SD15Adapter}

__all__ = ["ADAPTERS", "Conditioning", "EncodedPrompts", "FamilyAdapter", "load_adapter"]


def load_adapter(ref: ModelRef, device: torch.device, dtype: torch.dtype) -> FamilyAdapter:
    """The family adapter for `ref` (components are loaded on first use)."""
    if ref.family not in ADAPTERS:
        raise UsageError(
            f"Model {ref.given} is of family {ref.family}, which this version of dicecli cannot run yet; "
            f"supported: {', '.join(ADAPTERS)}."
        )
    return ADAPTERS[ref.family](ref, device, dtype)
