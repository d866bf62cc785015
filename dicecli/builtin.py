"""Built-in models: each family's random-weight `tiny-FAMILY` pipeline for smoke tests and CI, and the
trained models that plug-ins ship (`dicecli.plugins`); `BuiltinSource` is their model source.

Tiny models are built from configs with seeded weights on first use (`dicecli.miniatures`),
saved with `save_pretrained` under the user cache, and then loaded back through the same
`from_pretrained` code as any downloaded model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


from dicecli.errors import UsageError
from dicecli.families import FAMILIES
from dicecli.loading import ModelSource
from dicecli.miniatures import MINIATURES
from dicecli.paths import builtin_models_dir
from dicecli.plugins import shipped_models
from dicecli.runtime import quiet_libraries


def is_shipped(name: str) -> bool:
    return name in shipped_models()


def builtin_version(name: str) -> int:
    """The builder's version (bumped when a builder changes, so stale copies are rebuilt); 1 for shipped models."""
    return BUILDERS[name][1] if name in BUILDERS else 1


def builtin_path(name: str) -> Path:
    if is_shipped(name):
        return shipped_models()[name]
    return builtin_models_dir() / f"{name}-v{builtin_version(name)}"


def ensure_builtin(name: str) -> Path:
    """Return the folder of built-in model `name`, building it atomically if needed."""
    if is_shipped(name):
        folder = shipped_models()[name]
        if not (folder / "model_index.json").is_file():
            raise UsageError(f"The shipped model {name} is missing from {folder}; reinstall dicecli.")
        return folder
    if name not in BUILDERS:
        raise UsageError(f"Built-in model {name!r} does not exist; choose one of {', '.join([*BUILDERS, *shipped_models()])}.")
    path = builtin_path(name)
    if (path / "model_index.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        BUILDERS[name][0]().save_pretrained(staging, safe_serialization=True)
        try:
            os.replace(staging, path)
        except OSError:  # another process finished first
            if not (path / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


# tiny-FAMILY -> (builder, version), one per registered family
BUILDERS = {f"tiny-{family}": MINIATURES[family] for family in FAMILIES}


@dataclass(frozen=True)
class BuiltinSource(ModelSource):
    """A tiny random-weight model built on first use, or a model a plug-in ships."""

    @property
    def resolved(self) -> str:
        return f"builtin:{self.location}-v{builtin_version(self.location)}"

    def folder(self) -> Path:
        return ensure_builtin(self.location)

    def load(self, pipeline_class, **kwargs):
        return pipeline_class.from_pretrained(self.folder(), **kwargs)

    def config_file(self, name: str) -> Path:
        return self.folder() / name
