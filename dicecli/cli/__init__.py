"""The `dice` command line: parse, call, report. One module per command; no logic of its own."""

from dicecli.cli import analyses, comfyui, distill, encode, enhance, evaluate, recipes, sample, transfer  # noqa: F401 - registers the commands
from dicecli.cli.app import app, main

__all__ = ["app", "main"]
