"""Model references (`--model`): a recipe name, a recipe file, a Hugging Face hub id, a local
diffusers folder, or a single-file `.safetensors` checkpoint. `resolve_model` turns any of them
into a `ModelRef` (the name given, a `dicecli.loading.ModelSource`, the family, the recipe) without
loading weights."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dicecli.errors import UsageError
from dicecli.families import FAMILIES, family_of_checkpoint, family_of_pipeline
from dicecli.hub import hub_file
from dicecli.builtin import BuiltinSource
from dicecli.loading import FolderSource, HubSource, ModelSource, SingleFileSource
from dicecli.recipes import Recipe, available_recipes, load_recipe_file

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelRef:
    """A model reference, resolved without loading weights: plain data (the loading layer owns `source`)."""

    given: str  # as the user wrote it (recipe name, hub id, path): what caches and sample folders record
    source: ModelSource
    family: str
    recipe: Recipe | None = None
    vae: str | None = None  # a replacement VAE (folder or hub id), from --vae or the recipe
    clip_skip: int = 1  # A1111's "Clip skip": 1 the text encoder's usual output, 2 one layer earlier, ...
    embeddings: tuple = ()  # textual-inversion embeddings (`dicecli.textual_inversion.Embedding`), from --embedding
    loras: tuple = ()  # LoRAs (`dicecli.lora.LoRA`), from --lora

    @property
    def resolved(self) -> str:
        return self.source.resolved

    @property
    def name(self) -> str:
        """A short name for default paths: the recipe's name, else the reference as given."""
        return self.recipe.name if self.recipe else self.given


def model_defaults(ref: ModelRef) -> dict:
    """What the model's own config files say about the settings: its native resolution (as diffusers computes
    it), read without weights; nothing when the files are not at hand (loading will say why)."""
    try:
        return {"resolution": FAMILIES[ref.family].size_without_weights(ref.source)}
    except (UsageError, OSError, KeyError, TypeError, ValueError):
        return {}


def resolve_model(given: str, family: str | None = None, vae: str | None = None, clip_skip: int | None = None,
                  embeddings: tuple[str, ...] = (), loras: tuple[str, ...] = ()) -> ModelRef:
    """Resolve `--model` (and `--vae`, `--clip-skip`, else the recipe's, and `--embedding` files). Raises UsageError
    with one actionable sentence when it cannot."""
    from dicecli.lora import read_lora
    from dicecli.textual_inversion import read_embedding

    ref = _resolve(given, family)
    ref.vae = vae or (ref.recipe.source.get("vae") if ref.recipe else None)
    adapter = FAMILIES[ref.family]
    chosen = clip_skip if clip_skip is not None else (ref.recipe.source.get("clip_skip", 1) if ref.recipe else 1)
    ref.clip_skip = adapter.checked_clip_skip(chosen, ref.source, ref.given)
    ref.embeddings = tuple(read_embedding(path) for path in embeddings)
    ref.loras = tuple(read_lora(spec) for spec in loras)
    if ref.loras and not adapter.lora_components:
        raise UsageError(f"--lora: dicecli applies LoRAs to SD1.5 and SDXL models, not to {ref.given} ({ref.family}).")
    for embedding in ref.embeddings:
        adapter.check_embedding(embedding, adapter.text_without_weights(ref.source), ref.given)
    return ref


def _resolve(given: str, family: str | None) -> ModelRef:
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
        return ModelRef(given, FolderSource(str(path.resolve())), family or _folder_family(path))
    if path.is_file():
        return _single_file(given, path, family)
    if path.suffix.lower() in (".safetensors",) + PICKLE_SUFFIXES or given.startswith((".", "/", "~")):
        raise UsageError(f"Model file {given} does not exist; check the path given to --model.")
    if HUB_ID.match(given):
        return ModelRef(given, HubSource(given), family or _hub_family(given))
    raise UsageError(
        f"Model {given!r} is not a recipe name (see `dice recipes`), a local diffusers folder, "
        "a .safetensors checkpoint or a hub id (owner/name); check --model."
    )


def _from_recipe(recipe: Recipe, given: str) -> ModelRef:
    source = recipe.source
    if "builtin" in source:
        return ModelRef(given, BuiltinSource(source["builtin"]), recipe.family, recipe)
    if "hub_id" in source:
        return ModelRef(given, HubSource(source["hub_id"]), recipe.family, recipe)
    path = recipe.checkpoint_path
    if not path.exists():
        url = source.get("url", "the model's page")
        raise UsageError(
            f"Recipe {recipe.name} needs the checkpoint {path}; download {source.get('file', path.name)} "
            f"from {url} and save it there (or set DICE_CHECKPOINTS_DIR, or pass the file to --model)."
        )
    if path.is_dir():
        return ModelRef(given, FolderSource(str(path.resolve())), recipe.family, recipe)
    ref = _single_file(given, path, recipe.family)
    ref.recipe = recipe
    ref.source = SingleFileSource(ref.source.location, config=source.get("config", ref.source.config))
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
    if family in FAMILIES and FAMILIES[family].single_file_config is None:
        raise UsageError(
            f"Model file {path} is a single-file checkpoint, but {family} models load only as diffusers folders "
            "or hub ids; give the model's diffusers folder."
        )
    config = FAMILIES[family].single_file_config if family in FAMILIES else None
    return ModelRef(given, SingleFileSource(str(path.resolve()), config=config), family)


def _single_file_family(path: Path) -> str:
    """Family of an original-format checkpoint from its tensor names alone (no weights are read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except (SafetensorError, OSError) as error:
        raise UsageError(f"Checkpoint {path} is not a readable .safetensors file ({error}).") from None
    family = family_of_checkpoint(keys)
    if family is None:
        raise UsageError(
            f"Checkpoint {path} is not a checkpoint of a supported family "
            f"({', '.join(f for f, cls in FAMILIES.items() if cls.checkpoint_key_prefix)}) in the original "
            "single-file layout; use a diffusers folder, or a recipe naming its family."
        )
    return family


def _pipeline_family(model_index: dict, where: str) -> str:
    name = model_index.get("_class_name", "")
    family = family_of_pipeline(name)
    if family is None:
        supported = ", ".join(cls.pipeline_class_name for cls in FAMILIES.values())
        raise UsageError(f"{where} holds a {name or 'unknown'} pipeline; dicecli supports {supported}.")
    return family


def _folder_family(path: Path) -> str:
    index = path / "model_index.json"
    if not index.is_file():
        raise UsageError(f"Folder {path} is not a diffusers pipeline (no model_index.json); give a diffusers folder or a .safetensors file.")
    return _pipeline_family(json.loads(index.read_text()), f"Folder {path}")


def _hub_family(repo_id: str) -> str:
    index = hub_file(repo_id, "model_index.json")
    return _pipeline_family(json.loads(Path(index).read_text()), f"Hub model {repo_id}")
