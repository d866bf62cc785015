"""Plug-ins: shipped models, enhancers, training data and metrics that core code does not name.

A plug-in is a module with a `plugin` attribute (a `Plugin`). Plug-ins are found as the
sub-packages of this package and through the `dicecli.plugins` entry-point group, so a
separate package can add its own (docs/architecture.md). Core code
asks this registry by kind ("is there a shipped model called X?"), never by plug-in name.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

ENTRY_POINT_GROUP = "dicecli.plugins"


@dataclass
class Metric:
    """An evaluation metric for `dice eval --metrics NAME`.

    `score(folder, device)` receives a `dicecli.evaluate.SampleFolder` and returns a dict of
    numbers (and optionally a "note": a sentence for the reader, e.g. that the folder is not
    what the metric is made for); `columns` names and titles those numbers for the report tables.
    `fid_like` says the metric includes an FID, which gets FID's small-folder note (`dice eval`).
    """

    score: Callable
    columns: list[tuple[str, str]]
    description: str
    fid_like: bool = False


@dataclass
class Plugin:
    name: str
    models: dict[str, Path] = field(default_factory=dict)  # shipped diffusers folders, used like built-in models
    enhancers: dict[str, Path] = field(default_factory=dict)  # shipped enhancer files, by name
    data: dict[str, Callable] = field(default_factory=dict)  # `--data NAME[:ARG]` -> TrainingData
    metrics: dict[str, Metric] = field(default_factory=dict)


@functools.cache
def plugins() -> tuple[Plugin, ...]:
    found: list[Plugin] = []
    for module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        found.append(importlib.import_module(module.name).plugin)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        plugin = entry.load()
        if all(p.name != plugin.name for p in found):
            found.append(plugin)
    return tuple(found)


def _merged(kind: str) -> dict:
    merged: dict = {}
    for plugin in plugins():
        for key, value in getattr(plugin, kind).items():
            merged.setdefault(key, value)
    return merged


def shipped_models() -> dict[str, Path]:
    return _merged("models")


def shipped_enhancers() -> dict[str, Path]:
    return _merged("enhancers")


def data_sources() -> dict[str, Callable]:
    return _merged("data")


def metrics() -> dict[str, Metric]:
    return _merged("metrics")
