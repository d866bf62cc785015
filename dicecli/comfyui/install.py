"""`dice comfyui install`: the custom node that loads dicecli's nodes into a ComfyUI, and its enhancer folder."""

from __future__ import annotations

from pathlib import Path

from dicecli.errors import UsageError
from dicecli.files import atomic_path

NODE_FOLDER = "dicecli-nodes"  # not "dicecli": ComfyUI registers a custom node under its folder's name

LOADER = '''"""dicecli's DICE nodes, loaded from the dicecli package (written by `dice comfyui install`)."""

try:
    from dicecli.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_models_folder
except ImportError as error:
    raise ImportError("The DICE nodes need dicecli in the Python that runs ComfyUI; install it there with "
                      "`python -m pip install PATH-TO-dicecli` (docs/comfyui.md in dicecli).") from error

register_models_folder()
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
'''


def install(root: Path) -> tuple[Path, Path]:
    """Write `custom_nodes/dicecli-nodes/__init__.py` and create `models/dice/` under a ComfyUI folder (its
    checkout, or the folder it runs with --base-directory); returns both paths. Running it again rewrites the same file."""
    root = Path(root)
    if not (root / "custom_nodes").is_dir():
        raise UsageError(f"{root} is not a ComfyUI folder (it has no custom_nodes/); give the ComfyUI checkout, or the "
                         "folder ComfyUI runs with --base-directory.")
    node = root / "custom_nodes" / NODE_FOLDER / "__init__.py"
    node.parent.mkdir(exist_ok=True)
    with atomic_path(node) as tmp:
        tmp.write_text(LOADER)
    models = root / "models" / "dice"
    models.mkdir(parents=True, exist_ok=True)
    return node, models
