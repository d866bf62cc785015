"""The Typer app, its entry point, and how commands report (progress, summaries, errors)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
import traceback

import typer

from dicecli import __version__, faults
from dicecli.errors import DiceError



class DiceCommand(typer.core.TyperCommand):
    """A command whose usage line reads as shell tools' do: `dice transfer [OPTIONS] ENHANCER... INPUT`, required
    arguments bare and optional ones in brackets (Typer's own marks required ones with braces, `{INPUT}`)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                name = param.metavar or param.name.upper()
                if param.nargs != 1 and "..." not in name:
                    name += "..."
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class DiceTyper(typer.Typer):
    """Typer whose commands are DiceCommands, and whose help is click's plain layout: 80 columns wrap the help
    text, never the option names, and flags show no type (Typer's rich panels print `--quiet <bool>`)."""

    def __init__(self, **kwargs):
        super().__init__(rich_markup_mode=None, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or DiceCommand, **kwargs)


app = DiceTyper(
    name="dice",
    help="DICE: distill classifier-free guidance into text embeddings, for CFG-quality images at half the cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def speaks() -> bool:
    """Whether this process reports: the only one, or the main process of a job of several (docs/distributed.md)."""
    from dicecli import distributed

    group = distributed.joined()
    return group is None or group.main


def info(message: str, quiet: bool = False) -> None:
    if not quiet and speaks():
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
    if speaks():
        typer.echo(f"warning: {message}", err=True)


def report(summary: dict, as_json: bool, text: str, quiet: bool, data_on_stdout: bool = False) -> None:
    """JSON to stdout with --json (stderr when stdout carries the data), else one line to stderr."""
    if as_json and speaks():
        typer.echo(json.dumps(summary), err=data_on_stdout)
    else:
        info(text, quiet)


def devices(device: str, dtype) -> tuple:
    """(torch device, torch dtype) from --device and --dtype. Under a launcher of several processes, this process
    joins the job first and takes its node's GPU number LOCAL_RANK."""
    from dicecli import distributed
    from dicecli.runtime import select_device, select_dtype

    group = distributed.current(cpu=device == "cpu")
    local_rank = group.local_rank if group.several else None
    torch_device = select_device(device, local_rank)
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
    if not debug and os.environ.get("WORLD_SIZE", "1") != "1":
        # c10d logs its failures with C++ stack frames before raising; dice says each in one sentence instead
        # (read before torch is imported; --debug or an explicit TORCH_CPP_LOG_LEVEL shows them)
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
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
        fail(str(error), error.exit_code, error)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if debug:
            traceback.print_exc()
        fail(one_sentence(error), 1, error)
    finally:
        from dicecli import distributed

        if distributed.joined() is not None:
            distributed.joined().close()
    sys.exit(0)


def fail(sentence: str, exit_code: int, error: Exception) -> None:
    """Print the failure's sentence (once for a job of several processes: by the rank that failed first) and exit."""
    from dicecli import distributed

    if isinstance(error, distributed.RankFailed):  # said by the rank that failed; dated after it, for torchrun
        group = distributed.joined()
        tell_launcher(f"rank {group.rank} stopped, as {error}", distributed.failure_time() + 1)
        sys.exit(exit_code)
    line, first = distributed.report_failure(sentence, launch_error=isinstance(error, distributed.LaunchError))
    if distributed.launched_world() > 1:
        tell_launcher(line, time.time() + (0 if first else 1))
    if first:
        typer.echo(f"error: {line}", err=True)
    sys.exit(exit_code)


def tell_launcher(line: str, when: float) -> None:
    """torchrun's failure summary shows the earliest error file (by its whole-second timestamp) as the root cause:
    make it the sentence, not a traceback."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError), open(path, "w") as f:
            json.dump({"message": {"message": line, "extraInfo": {"timestamp": str(int(when))}}}, f)


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
