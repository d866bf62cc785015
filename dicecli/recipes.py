"""Recipes: one TOML per model with its source, family and each stage's defaults (`recipes/`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicecli.errors import UsageError
from dicecli.families import FAMILIES
from dicecli.paths import checkpoints_dir
from dicecli.settings import STAGE_CONFIGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STAGES = ("encode", "distill", "enhance", "sample", "eval")
SOURCE_KEYS = {"hub_id", "builtin", "file", "path"}


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

    @property
    def checkpoint_path(self) -> Path:
        """Where a single-file recipe's checkpoint is: `path`, else `file` in the checkpoints folder."""
        s = self.source
        return Path(s["path"]).expanduser() if "path" in s else checkpoints_dir() / s["file"]


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
    if not isinstance(source, dict) or not (SOURCE_KEYS & source.keys()):
        raise UsageError(f"Recipe {path} needs a [source] table with hub_id, path, file or builtin; add one.")
    stages = {}
    for stage in STAGES:
        table = data.get(stage, {})
        if not isinstance(table, dict):
            raise UsageError(f"Recipe {path}: [{stage}] must be a table of settings; fix the file.")
        STAGE_CONFIGS[stage].checked(table, f"Recipe {path}: [{stage}]")  # every value typed, when the recipe is read
        stages[stage] = dict(table)
    return Recipe(name, family, data.get("description", ""), dict(source), stages, path)


def available_recipes() -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            recipes.setdefault(path.stem, load_recipe_file(path))
    return recipes


def find_recipe(name: str, option: str = "--recipe") -> Recipe:
    recipes = available_recipes()
    if name not in recipes:
        raise UsageError(f"{option} {name!r} is not a recipe; see `dice recipes`.")
    return recipes[name]


def model_available(recipe: Recipe) -> str:
    """'yes', 'no' or 'built on first use', without touching the network."""
    source = recipe.source
    if "builtin" in source:
        from dicecli.builtin import builtin_path, is_shipped

        if is_shipped(source["builtin"]):
            return "yes"
        return "yes" if (builtin_path(source["builtin"]) / "model_index.json").exists() else "built on first use"
    if "hub_id" in source:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source["hub_id"], "model_index.json")
        return "yes" if isinstance(found, str) else "no"
    return "yes" if recipe.checkpoint_path.exists() else "no"
