"""The Typer app, its entry point, and how commands report (progress, summaries, errors)."""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback

import typer

from dicecli import __version__, faults
from dicecli.errors import DiceError

app = typer.Typer(
    name="dice",
    help="DICE: distill classifier-free guidance into text embeddings, for CFG-quality images at half the cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


def notes(quiet: bool):
    """How a command passes on a note (e.g. the text-encoder policy's): one line on stderr, each once, unless --quiet."""
    said: set[str] = set()

    def note(message: str) -> None:
        if message not in said:
            said.add(message)
            info(f"note: {message}", quiet)

    return note


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def report(summary: dict, as_json: bool, text: str, quiet: bool, data_on_stdout: bool = False) -> None:
    """JSON to stdout with --json (stderr when stdout carries the data), else one line to stderr."""
    if as_json:
        typer.echo(json.dumps(summary), err=data_on_stdout)
    else:
        info(text, quiet)


def devices(device: str, dtype) -> tuple:
    """(torch device, torch dtype) from --device and --dtype."""
    from dicecli.runtime import select_device, select_dtype

    torch_device = select_device(device)
    return torch_device, select_dtype(dtype.value if hasattr(dtype, "value") else dtype, torch_device)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns failures into one sentence and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("DICE_DEBUG"))
    args = [a for a in args if a != "--debug"]
    try:
        faults.point("start")
        # Typer reports its own usage errors (exit 2) and exits; our failures come out as exceptions.
        app(args=args, prog_name="dice")
    except KeyboardInterrupt:  # Ctrl-C outside the app (start-up)
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except SystemExit as done:
        if done.code == 130:  # Typer turns Ctrl-C inside a command into a silent exit 130
            typer.echo("Interrupted.", err=True)
        raise
    except DiceError as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {one_sentence(error)}", err=True)
        sys.exit(1)
    sys.exit(0)


def one_sentence(error: Exception) -> str:
    """An unexpected failure in one line; running out of GPU memory says what to change."""
    import torch

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return (f"no space left on the device{where}; free some space and run the command again "
                "(earlier results are intact).")
    if isinstance(error, MemoryError) or isinstance(error, RuntimeError) and "can't allocate memory" in str(error):
        return ("this machine ran out of memory; use a smaller --batch-size or image size, or close what else uses "
                "the memory (earlier results are intact).")
    if isinstance(error, torch.OutOfMemoryError):
        return ("the GPU ran out of memory; use a smaller --batch-size (dice distill: or a larger --grad-accum, "
                "which keeps the images per update), or close what else uses the GPU.")
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first[:300]} (run again with --debug for the traceback)."
