"""Helpers the tests share: running `dice` (in this process or as a subprocess), building model variants and
training data, and the short distillation the family suite measures. Fixtures live in conftest.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

# Raw exception text ("IndexError: ...", "ValueError: Overflow ...") must never reach the user for an input
# problem: every error the reliability battery provokes is scanned for it (conftest.no_raw_exception_text).
RAW_EXCEPTION = re.compile(r"\b[A-Z]\w*(Error|Exception): ")
OUTPUTS: list[str] = []  # stderr of every `dice` run of the current test


@dataclass
class Result:
    code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode()


def run_dice(*args: str, input: bytes | str | None = None) -> Result:
    """Run `dice ARGS` in this process through the real entry point (`dicecli.cli.main`)."""
    from dicecli.cli import main

    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        result = Result(code, out.getvalue(), err.getvalue().decode())
    OUTPUTS.append(result.stderr)
    return result


def run_dice_process(*args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m dicecli ARGS` as a separate process (for stdout piping and signals)."""
    done = subprocess.run([sys.executable, "-m", "dicecli", *map(str, args)], input=input,
                          capture_output=True, timeout=timeout, env=os.environ.copy())
    OUTPUTS.append(done.stderr.decode(errors="replace"))
    return done


def random_enhancer_file(path: Path, scale: float = 0.1, width: int = 32, **metadata) -> Path:
    """A non-trivial tiny-sd15 enhancer (seeded random weights of std `scale`) saved at `path`: tests measure its
    effect, not its quality. `metadata` adds to the enhancer file's."""
    import torch

    from dicecli.enhancer import Enhancer, save_enhancer

    torch.manual_seed(0)
    enhancer = Enhancer(width)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, scale)
    save_enhancer(enhancer, path, **{"family": "sd15", "tokens": 77, "trained_on": "tiny-sd15", **metadata})
    return path


def variant_model(source: Path, folder: Path, encoder_class, subfolder: str, shift: float) -> Path:
    """A copy of the diffusers model `source` whose text encoder `subfolder` has every weight shifted by `shift`."""
    import torch

    shutil.copytree(source, folder)
    encoder = encoder_class.from_pretrained(folder / subfolder)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(shift)
    encoder.save_pretrained(folder / subfolder)
    return folder


def variant_vae(source: Path, folder: Path, shift: float = 0.05) -> Path:
    """A copy of the diffusers model `source` whose VAE has every weight shifted by `shift` (another latent space)."""
    from diffusers import AutoencoderKL

    return variant_model(source, folder, AutoencoderKL, "vae", shift)


def write_imagefolder(folder: Path, captions: list[str], size: tuple[int, int] = (32, 32), seed: int = 1) -> Path:
    """An imagefolder (random images + metadata.jsonl) as `dice sample` or a user would lay it out."""
    import json

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "metadata.jsonl", "w") as f:
        for i, caption in enumerate(captions):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
            f.write(json.dumps({"file_name": f"{i:06d}.png", "text": caption}) + "\n")
    return folder


def split_prompts(train: int = 200, held_out: int = 32) -> tuple[list[str], list[str]]:
    """Compositional prompts (colour x thing x place), shuffled with a fixed seed: training and held-out."""
    import itertools

    import torch

    colors = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
    things = ["cat", "dog", "house", "car", "tree", "boat", "bird", "chair"]
    places = ["on a beach", "in a city", "in the snow", "at night"]
    prompts = [f"a {c} {t} {p}" for c, t, p in itertools.product(colors, things, places)]
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0)).tolist()
    return [prompts[i] for i in order[:train]], [prompts[i] for i in order[train : train + held_out]]


def latent_cache(dice, tmp_path: Path, model: str, prompts: list[str]) -> Path:
    """`dice encode --images` of random 32 x 32 images captioned with `prompts`: distillation data for a tiny model."""
    folder = write_imagefolder(tmp_path / "data", prompts)
    latents = tmp_path / "latents.h5"
    result = dice("encode", "--images", folder, "-o", latents, "--model", model, "--resolution", "32")
    assert result.code == 0, result.stderr
    return latents


def short_distill_guidance_error(dice, tmp_path: Path, model: str, steps: int):
    """`dice distill` of a tiny model (its family's loss, 8 per step, lr 5e-3, null negatives) on the learning tests'
    training prompts, then the guidance error on the held-out ones: (enhancer metadata, unguided error, DICE error)."""
    import torch

    from dicecli.enhancer import read_enhancer, read_metadata
    from dicecli.families import load_adapter
    from dicecli.method import guidance_error
    from dicecli.refs import resolve_model

    train, held_out = split_prompts()
    latents = latent_cache(dice, tmp_path, model, train)
    out = tmp_path / "e.safetensors"
    result = dice("distill", "--model", model, "--data", latents, "-o", out, "--work-dir", tmp_path / "w",
                  "--steps", str(steps), "--batch-size", "8", "--lr", "5e-3", "--negative-prompts", "none",
                  "--checkpoint-every", "1000", "--no-validate", "--json")
    assert result.code == 0, result.stderr
    adapter = load_adapter(resolve_model(model), torch.device("cpu"), torch.float32)
    enhancer, _ = read_enhancer(out)
    cond = adapter.encode(held_out).conditioning
    x0 = torch.randn(len(held_out), 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.8
    plain, enhanced = guidance_error(adapter, enhancer, x0, cond, adapter.null(), 5.0, seed=7)
    return read_metadata(out), plain, enhanced


def family_enhancer_file(family: str, path: Path, scale: float = 0.1) -> Path:
    """A non-trivial enhancer (seeded random weights) for the tiny model of `family`, saved at `path`."""
    import torch

    from dicecli.enhancer import Enhancer, save_enhancer
    from dicecli.families import FAMILIES
    from dicecli.refs import resolve_model

    text = FAMILIES[family].text_from_configs(resolve_model(f"tiny-{family}").source)
    torch.manual_seed(0)
    enhancer = Enhancer.for_text(text)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, scale)
    save_enhancer(enhancer, path, family=family, tokens=text.tokens, trained_on=f"tiny-{family}")
    return path


def grid_size(titles: list[str], rows: int, side: int, row_titles: bool = False) -> tuple[int, int]:
    """The size of an `image_grid` of `rows` x len(titles) images of `side` pixels: the column titles' strip (as
    many lines as the longest title wraps to), and with `row_titles` the prompts' strip on the left."""
    from PIL import Image, ImageDraw

    from dicecli.sampling import LINE_HEIGHT, wrapped

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    top = LINE_HEIGHT * max(len(wrapped(draw, t, side - 4)) for t in titles) + 2
    return (max(side, 128) if row_titles else 0) + side * len(titles), top + side * rows
