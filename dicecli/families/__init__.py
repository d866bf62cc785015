"""One adapter per model family; this registry is the only list of families."""

from __future__ import annotations

from typing import Protocol

import torch

from dicecli.errors import UsageError
from dicecli.families.base import Conditioning, EncodedPrompts, FamilyAdapter, TextSpec
from dicecli.families.pixart import PixArtAdapter
from dicecli.families.sd15 import SD15Adapter
from dicecli.families.sdxl import SDXLAdapter
from dicecli.loading import Components, ModelSource


class ModelSpec(Protocol):
    """What loading an adapter needs of a model reference (`dicecli.refs.ModelRef` is one)."""

    given: str  # as the user named it, for sentences
    family: str
    source: ModelSource
    vae: str | None  # a replacement VAE

FAMILIES: dict[str, type[FamilyAdapter]] = {adapter.family: adapter for adapter in (SD15Adapter, SDXLAdapter, PixArtAdapter)}

__all__ = ["FAMILIES", "Conditioning", "EncodedPrompts", "FamilyAdapter", "ModelSpec", "TextSpec", "adapter_class", "load_adapter"]


def adapter_class(family: str, given: str = "") -> type[FamilyAdapter]:
    if family not in FAMILIES:
        raise UsageError(
            f"Model {given or family} is of family {family}, which this version of dicecli does not know; "
            f"supported: {', '.join(FAMILIES)}."
        )
    return FAMILIES[family]


def load_adapter(ref: ModelSpec, device: torch.device, dtype: torch.dtype) -> FamilyAdapter:
    """The family adapter for `ref`; its components load on first use."""
    cls = adapter_class(ref.family, ref.given)
    components = Components(ref.source, cls.pipeline_class_name, cls.all_components, device, dtype, cls.load_kwargs,
                            vae=ref.vae, name=ref.given, family=ref.family)
    return cls(components)


def family_of_pipeline(class_name: str) -> str | None:
    return next((f for f, cls in FAMILIES.items() if cls.pipeline_class_name == class_name), None)


def family_of_checkpoint(keys: set[str]) -> str | None:
    """The family of an original-layout checkpoint from its tensor names (no weights are read)."""
    prefixes = {f: cls.checkpoint_key_prefix for f, cls in FAMILIES.items() if cls.checkpoint_key_prefix}
    return next((f for f, prefix in prefixes.items() if any(k.startswith(prefix) for k in keys)), None)
