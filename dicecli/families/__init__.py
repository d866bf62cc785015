"""One adapter per model family; this registry is the only list of families."""

from __future__ import annotations

from typing import Protocol

import torch

from dicecli.errors import UsageError
from dicecli.families.base import Conditioning, EncodedPrompts, FamilyAdapter, TextSpec, Tokens
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

__all__ = ["FAMILIES", "Conditioning", "EncodedPrompts", "FamilyAdapter", "ModelSpec", "TextSpec", "Tokens", "adapter_class",
           "adapter_for_pipeline", "load_adapter"]


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
    components = Components(ref.source, cls, device, dtype,
                            vae=ref.vae, name=ref.given, family=ref.family)
    return cls(components, getattr(ref, "clip_skip", 1), getattr(ref, "embeddings", ()), getattr(ref, "loras", ()))


def family_of_pipeline(class_name: str) -> str | None:
    return next((f for f, cls in FAMILIES.items() if cls.pipeline_class_name == class_name), None)


def adapter_for_pipeline(pipe) -> FamilyAdapter:
    """The family adapter around a diffusers pipeline object's own components (nothing is loaded or copied)."""
    from dicecli.loading import PipelineSource

    name = type(pipe).__name__
    family = next((f for f, cls in FAMILIES.items() if name in cls.attachable_pipelines), None)
    if family is None:
        supported = ", ".join(p for cls in FAMILIES.values() for p in cls.attachable_pipelines)
        raise UsageError(f"{name} is not a pipeline dicecli can attach an enhancer to; use one of {supported}.")
    cls = FAMILIES[family]
    label = getattr(pipe, "name_or_path", None) or name
    # the device the pipeline itself encodes on: under CPU offload its modules rest on the CPU, not there
    components = Components(PipelineSource(label), cls, getattr(pipe, "_execution_device", pipe.device), pipe.dtype,
                            name=label, family=family)
    for part in cls.all_components:
        if hasattr(pipe, part):
            components[part] = getattr(pipe, part)
    components.pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_")}
    return cls(components)


def family_of_checkpoint(keys: set[str]) -> str | None:
    """The family of an original-layout checkpoint from its tensor names (no weights are read)."""
    prefixes = {f: cls.checkpoint_key_prefix for f, cls in FAMILIES.items() if cls.checkpoint_key_prefix}
    return next((f for f, prefix in prefixes.items() if any(k.startswith(prefix) for k in keys)), None)
