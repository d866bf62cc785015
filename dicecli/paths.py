"""Where dicecli keeps its own files (built-in models, community checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def dice_home() -> Path:
    """`$DICE_HOME`, else `$XDG_CACHE_HOME/dicecli`, else `~/.cache/dicecli`."""
    if os.environ.get("DICE_HOME"):
        return Path(os.environ["DICE_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dicecli"


def checkpoints_dir() -> Path:
    """Where recipes of single-file community checkpoints look for the user's downloaded file."""
    if os.environ.get("DICE_CHECKPOINTS_DIR"):
        return Path(os.environ["DICE_CHECKPOINTS_DIR"]).expanduser()
    return dice_home() / "checkpoints"


def builtin_models_dir() -> Path:
    return dice_home() / "models"
