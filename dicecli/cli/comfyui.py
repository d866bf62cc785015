"""`dice comfyui install`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dicecli.cli.app import DiceTyper, app, report
from dicecli.cli.options import JsonOption, QuietOption

comfyui = DiceTyper(help="The DICE nodes for ComfyUI (docs/comfyui.md).", no_args_is_help=True)
app.add_typer(comfyui, name="comfyui")


@comfyui.command("install")
def install_command(
    root: Annotated[Path, typer.Argument(metavar="COMFYUI", help="The ComfyUI folder: its checkout, or the folder it runs with --base-directory.")],
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Add the DICE nodes to a ComfyUI (custom_nodes/dicecli-nodes/) and create models/dice/ for enhancers."""
    from dicecli.comfyui.install import install

    node, models = install(root)
    report({"custom_node": str(node), "enhancers": str(models)}, as_json,
           f"installed the DICE nodes in {node.parent}; put enhancers in {models} and restart ComfyUI "
           "(dicecli must be installed in ComfyUI's Python).", quiet)
