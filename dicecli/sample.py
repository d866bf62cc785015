"""`dice sample`: embeddings or prompts -> a sample folder, unguided, CFG, DICE, or DICE + CFG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

from dicecli.errors import UsageError
from dicecli.files import check_output
from dicecli.preparation import STDIN, open_enhancer, prepare, read_input
from dicecli.sampling import SampleJob, make_job
from dicecli.settings import SampleConfig

NEEDS_INPUT = ("dice sample needs INPUT: an embedding cache (.h5), a prompts file with --model, "
               "or a cache or prompts piped to standard input.")


def resolve_source(source: str | None) -> str:
    """No INPUT: read standard input when something is piped in, else say what is needed."""
    if source is not None:
        return source
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(NEEDS_INPUT)
    return STDIN


def prepare_job(source: str | None, *, model: str | None, enhancer: str | None, alpha: float | None, cfg: float,
                negative: str | None, steps: int | None, scheduler: str | None, seed: int, height: int | None,
                width: int | None, num_per_prompt: int, device: torch.device, dtype: torch.dtype,
                vae: str | None = None, batch_size: int = 1, note: Callable[[str], None] = lambda _: None,
                output: Path | None = None) -> SampleJob:
    SampleConfig(cfg=cfg, alpha=1.0 if alpha is None else alpha, height=height, width=width,
                 steps=1 if steps is None else steps).check(None)  # numbers first, before any file is read
    chosen_enhancer = open_enhancer(enhancer) if enhancer else None
    data = read_input(resolve_source(source), empty_stdin=NEEDS_INPUT if source is None else None)
    prepared = prepare(data, model=model, enhancer=chosen_enhancer, alpha=alpha, negative=negative, vae=vae,
                       needs_model_for="Sampling a prompts file")
    if output is not None:  # before any weights load (run_job checks the default folder)
        check_output(output, prepared.input_paths, folder=True)
    return make_job(prepared, cfg=cfg, steps=steps, scheduler=scheduler, seed=seed, height=height, width=width,
                    num_per_prompt=num_per_prompt, device=device, dtype=dtype, batch_size=batch_size, note=note)
