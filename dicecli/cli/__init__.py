"""The `dice` command line: parse, call, report. One module per command; no logic of its own."""

# Importing a command's module registers it (in this order in `dice --help`).
from dicecli.cli import encode, distill, enhance, sample, transfer, evaluate, inspect, attention, trigger  # noqa: F401
from dicecli.cli import recipes, comfyui  # noqa: F401
from dicecli.cli.app import app, main

__all__ = ["app", "main"]
