"""`dice recipes`."""

from __future__ import annotations

import json

import typer

from dicecli.cli.app import app
from dicecli.cli.options import JsonOption, QuietOption


@app.command("recipes")
def recipes_command(quiet: QuietOption = False, as_json: JsonOption = False) -> None:
    """List the shipped model recipes: name, family, source, and whether the model is here (--quiet: names only)."""
    from dicecli.recipes import available_recipes, model_available

    rows = [
        {"name": r.name, "family": r.family, "source": r.source_text, "available": model_available(r),
         "description": r.description}
        for r in available_recipes().values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if quiet:  # one name a line, for scripts (`for m in $(dice recipes -q)`)
        typer.echo("".join(f"{row['name']}\n" for row in rows), nl=False)
        return
    columns = ("name", "family", "source", "available")
    table = [{k: k for k in columns}] + rows
    widths = [max(len(str(row[k])) for row in table) for k in columns]
    for row in table:
        typer.echo("  ".join(str(row[k]).ljust(w) for k, w in zip(columns, widths)).rstrip())
