"""Recipes (one TOML per model) and model references (DESIGN §3 `MODEL`).

A model reference is a recipe name, a recipe file, a Hugging Face hub id, a local
diffusers folder, or a single-file `.safetensors` checkpoint. `resolve_model` turns
any of them into a `ModelRef` without loading weights.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicecli.errors import UsageError
from dicecli.paths import checkpoints_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAMILIES = ("sd15", "sdxl", "pixart")
STAGES = ("encode", "distill", "enhance", "sample", "eval")
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "PixArtAlphaPipeline": "pixart",
}
# Config repos used to build a pipeline around a single-file checkpoint of each family.
DEFAULT_SINGLE_FILE_CONFIG = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def recipe_dirs() -> list[Path]:
    """Shipped recipes: inside the installed package, or the repository's `recipes/`."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "_recipes", here.parent / "recipes") if d.is_dir()]


@dataclass
class Recipe:
    name: str
    family: str
    description: str
    source: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    path: Path

    def defaults(self, stage: str) -> dict[str, Any]:
        return dict(self.stages.get(stage, {}))

    @property
    def source_text(self) -> str:
        s = self.source
        if "hub_id" in s:
            return s["hub_id"]
        if "builtin" in s:
            return f"built-in ({s['builtin']})"
        return f"file {s.get('path') or s.get('file')}"


def load_recipe_file(path: Path) -> Recipe:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"Recipe {path} cannot be read ({error}); check the file.") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"Recipe {path} is not valid TOML ({error}); fix the file.") from None
    name = data.get("name", path.stem)
    family = data.get("family")
    if family not in FAMILIES:
        raise UsageError(f"Recipe {path} has family {family!r}; set family to one of {', '.join(FAMILIES)}.")
    source = data.get("source")
    if not isinstance(source, dict) or not ({"hub_id", "builtin", "file", "path"} & source.keys()):
        raise UsageError(f"Recipe {path} needs a [source] table with hub_id, path, file or builtin; add one.")
    stages = {stage: dict(data.get(stage, {})) for stage in STAGES}
    return Recipe(name, family, data.get("description", ""), dict(source), stages, path)


def available_recipes() -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            recipes.setdefault(path.stem, load_recipe_file(path))
    return recipes


@dataclass
class ModelRef:
    """A model reference, resolved without loading weights."""

    given: str
    kind: str  # "builtin" | "hub" | "folder" | "single_file"
    location: str  # builtin name, hub id, folder or file path
    family: str
    recipe: Recipe | None = None
    config: str | None = None  # single files: diffusers config (hub id or folder)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolved(self) -> str:
        if self.kind == "builtin":
            from dicecli.builtin import BUILD_VERSION

            return f"builtin:{self.location}-v{BUILD_VERSION}"
        return self.location

    def defaults(self, stage: str) -> dict[str, Any]:
        return self.recipe.defaults(stage) if self.recipe else {}


def resolve_model(given: str, family: str | None = None) -> ModelRef:
    """Resolve `--model`. Raises UsageError with one actionable sentence when it cannot."""
    if not given:
        raise UsageError("--model is required; give a recipe name (see `dice recipes`), a hub id, a folder or a .safetensors file.")
    path = Path(given).expanduser()
    if given.endswith(".toml"):
        if not path.is_file():
            raise UsageError(f"Recipe file {given} does not exist; check the path.")
        return _from_recipe(load_recipe_file(path), given)
    recipes = available_recipes()
    if given in recipes:
        return _from_recipe(recipes[given], given)
    if path.is_dir():
        return ModelRef(given, "folder", str(path.resolve()), family or _folder_family(path))
    if path.is_file():
        return _single_file(given, path, family)
    if path.suffix.lower() in (".safetensors",) + PICKLE_SUFFIXES or given.startswith((".", "/", "~")):
        raise UsageError(f"Model file {given} does not exist; check the path given to --model.")
    if HUB_ID.match(given):
        return ModelRef(given, "hub", given, family or _hub_family(given))
    raise UsageError(
        f"Model {given!r} is not a recipe name (see `dice recipes`), a local diffusers folder, "
        "a .safetensors checkpoint or a hub id (owner/name); check --model."
    )


def _from_recipe(recipe: Recipe, given: str) -> ModelRef:
    source = recipe.source
    if "builtin" in source:
        return ModelRef(given, "builtin", source["builtin"], recipe.family, recipe)
    if "hub_id" in source:
        return ModelRef(given, "hub", source["hub_id"], recipe.family, recipe)
    path = Path(source["path"]).expanduser() if "path" in source else checkpoints_dir() / source["file"]
    if not path.exists():
        url = source.get("url", "the model's page")
        raise UsageError(
            f"Recipe {recipe.name} needs the checkpoint {path}; download {source.get('file', path.name)} "
            f"from {url} and save it there (or set DICE_CHECKPOINTS_DIR, or pass the file to --model)."
        )
    if path.is_dir():
        return ModelRef(given, "folder", str(path.resolve()), recipe.family, recipe)
    ref = _single_file(given, path, recipe.family)
    ref.recipe = recipe
    ref.config = source.get("config", ref.config)
    return ref


def _single_file(given: str, path: Path, family: str | None) -> ModelRef:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UsageError(
            f"Checkpoint {path} is a pickle ({suffix}), which dicecli never loads because it can run code; "
            "convert it to .safetensors first."
        )
    if suffix != ".safetensors":
        raise UsageError(f"Model file {path} is not a .safetensors checkpoint; give a .safetensors file or a diffusers folder.")
    if family is None:
        family = _single_file_family(path)
    return ModelRef(given, "single_file", str(path.resolve()), family, config=DEFAULT_SINGLE_FILE_CONFIG.get(family))


def _single_file_family(path: Path) -> str:
    """Family of an original-format checkpoint from its tensor names alone (no weights are read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except (SafetensorError, OSError) as error:
        raise UsageError(f"Checkpoint {path} is not a readable .safetensors file ({error}).") from None
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    raise UsageError(
        f"Checkpoint {path} is neither an SD1.5 nor an SDXL checkpoint in the original single-file layout; "
        "use a diffusers folder, or a recipe naming its family."
    )


def _pipeline_family(model_index: dict, where: str) -> str:
    name = model_index.get("_class_name", "")
    if name not in PIPELINE_FAMILIES:
        raise UsageError(
            f"{where} holds a {name or 'unknown'} pipeline; dicecli supports "
            + ", ".join(PIPELINE_FAMILIES) + "."
        )
    return PIPELINE_FAMILIES[name]


def _folder_family(path: Path) -> str:
    index = path / "model_index.json"
    if not index.is_file():
        raise UsageError(f"Folder {path} is not a diffusers pipeline (no model_index.json); give a diffusers folder or a .safetensors file.")
    return _pipeline_family(json.loads(index.read_text()), f"Folder {path}")


def _hub_family(repo_id: str) -> str:
    index = hub_file(repo_id, "model_index.json")
    return _pipeline_family(json.loads(Path(index).read_text()), f"Hub model {repo_id}")


def hub_file(repo_id: str, filename: str) -> str:
    """Fetch one file of a hub repo, from the local cache first; offline gets one clear sentence."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if constants.HF_HUB_OFFLINE:
        raise UsageError(hub_missing_message(repo_id)) from None
    try:
        return hf_hub_download(repo_id, filename)
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise UsageError(
            f"Model {repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and could not be "
            f"downloaded ({type(error).__name__}); check the id and your connection, or pass a local folder."
        ) from None


def hub_missing_message(repo_id: str) -> str:
    from huggingface_hub import constants

    return (
        f"Model {repo_id} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
        f"is set; download it on a connected machine (`hf download {repo_id}`) or unset HF_HUB_OFFLINE."
    )


def model_available(recipe: Recipe) -> str:
    """'yes', 'no' or 'built on first use', without touching the network."""
    source = recipe.source
    if "builtin" in source:
        from dicecli.builtin import builtin_path

        return "yes" if (builtin_path(source["builtin"]) / "model_index.json").exists() else "built on first use"
    if "hub_id" in source:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source["hub_id"], "model_index.json")
        return "yes" if isinstance(found, str) else "no"
    path = Path(source["path"]).expanduser() if "path" in source else checkpoints_dir() / source["file"]
    return "yes" if path.exists() else "no"
