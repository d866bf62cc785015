"""The `dice` command line: parse, call, report. No logic of its own lives here."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Optional

import typer

from dicecli import __version__
from dicecli.errors import DiceError

app = typer.Typer(
    name="dice",
    help="DICE: distill classifier-free guidance into text embeddings, for CFG-quality images at half the cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Options shared by the commands that load a model.
DeviceOption = typer.Option("auto", "--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N.")
DtypeOption = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary (for cron and scripts).")
JsonOption = typer.Option(False, "--json", help="Print a machine-readable JSON summary.")


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def report(summary: dict, as_json: bool, text: str, quiet: bool, data_on_stdout: bool = False) -> None:
    """JSON to stdout with --json (stderr when stdout carries the data), else one line to stderr."""
    if as_json:
        typer.echo(json.dumps(summary), err=data_on_stdout)
    else:
        info(text, quiet)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dice {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors (accepted anywhere on the line)."),
) -> None:
    """DICE: distill classifier-free guidance into text embeddings."""


@app.command("recipes")
def recipes_command(as_json: bool = JsonOption) -> None:
    """List the shipped model recipes: name, family, source, and whether the model is here."""
    from dicecli.recipes import available_recipes, model_available

    rows = [
        {"name": r.name, "family": r.family, "source": r.source_text, "available": model_available(r),
         "description": r.description}
        for r in available_recipes().values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("name", "family", "source", "available")
    table = [{k: k for k in columns}] + rows
    widths = [max(len(str(row[k])) for row in table) for k in columns]
    for row in table:
        typer.echo("  ".join(str(row[k]).ljust(w) for k, w in zip(columns, widths)).rstrip())


@app.command("encode")
def encode_command(
    prompts: str = typer.Argument(..., metavar="PROMPTS", help="Prompts: .txt (one a line), .jsonl, COCO captions .json, or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help="HDF5 cache to write or extend (- for stdout)."),
    model: str = typer.Option(..., "--model", "-m", help="Recipe name, hub id, diffusers folder or .safetensors file."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Also store the embedding of this negative prompt."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per text-encoder call [recipe, else 64]."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Encode prompts with MODEL's text encoder into an HDF5 embedding cache (appends only new prompts)."""
    from dicecli.encode import encode_prompts
    from dicecli.prompts import read_prompts
    from dicecli.recipes import resolve_model
    from dicecli.runtime import select_device, select_dtype

    texts = read_prompts(prompts)
    ref = resolve_model(model)
    torch_device = select_device(device)
    result = encode_prompts(
        texts, ref, output, negative=negative,
        batch_size=batch_size or ref.defaults("encode").get("batch_size", 64),
        device=torch_device, dtype=select_dtype(dtype, torch_device), progress=show_progress(quiet),
    )
    if result.truncated:
        warn(f"{result.truncated} of {result.prompts_new} prompts are longer than {result.tokens} tokens and were truncated.")
    report(
        result.as_dict(), as_json,
        f"{output}: {result.prompts_new} new prompts encoded, {result.prompts_total} in the cache "
        f"({result.family}, {result.tokens}x{result.context_dim}).",
        quiet, data_on_stdout=output == "-",
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns failures into one sentence and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("DICE_DEBUG"))
    args = [a for a in args if a != "--debug"]
    try:
        # Typer reports its own usage errors (exit 2) and exits; our failures come out as exceptions.
        app(args=args, prog_name="dice")
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except DiceError as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {type(error).__name__}: {error} (run again with --debug for the traceback).", err=True)
        sys.exit(1)
    sys.exit(0)
