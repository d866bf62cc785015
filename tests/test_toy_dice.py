"""DICE on the shipped toy model: the reference enhancer and a short CPU distillation (docs/toyworld.md)."""

import json

import numpy as np
import pytest
import torch

from dicecli.method import guidance_error
from dicecli.enhancer import load_enhancer, read_metadata, resolve_enhancer
from dicecli.plugins.toy.world import ENHANCER_FILE
from dicecli.plugins.toy.world import ToyWorld, parse_caption, scene_from_stated

HELD_OUT = ToyWorld(size=48, seed=7, held_out=True)  # the report's held-out prompts, first 48


@pytest.fixture(scope="module")
def toy():
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model("toy"), torch.device("cpu"), torch.float32)
    adapter.require("unet", "vae", "text_encoder", "tokenizer")
    return adapter


@pytest.fixture(scope="module")
def held_out(toy):
    """Held-out prompts, their conditioning, the null conditioning, and latents of fresh renders of them."""
    prompts = list(HELD_OUT[:48])
    rng = np.random.default_rng(0)
    pixels = np.stack([np.asarray(scene_from_stated(parse_caption(p), rng).render(rng)) for p in prompts])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = toy.vae.encode(x).latent_dist.mean * toy.vae.config.scaling_factor
    return prompts, toy.encode(prompts).conditioning, toy.encode([""]).conditioning, latents


def test_shipped_enhancer_is_named_toy(tmp_path, monkeypatch):
    assert resolve_enhancer("toy") == ENHANCER_FILE
    meta = read_metadata(ENHANCER_FILE)
    assert (meta["trained_on"], meta["family"], meta["context_dim"], meta["stored_as"]) == ("toy", "sd15", 64, "float16")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy").write_text("a file of the user's")
    assert resolve_enhancer("toy").resolve() == (tmp_path / "toy").resolve()  # an existing file wins


def test_shipped_enhancer_reduces_guidance_error(toy, held_out):
    _, cond, null, latents = held_out
    enhancer, _ = load_enhancer(resolve_enhancer("toy"))
    for seed in (0, 1):
        before, after = guidance_error(toy, enhancer, latents, cond, null, 5.0, seed=seed)
        assert after <= 0.92 * before, (seed, before, after)  # measured: about 15 % less


@pytest.mark.slow
def test_shipped_enhancer_raises_unguided_alignment(dice, tmp_path):
    """Through the tool: unguided vs `--enhancer toy` samples, scored by `dice eval --metrics toy`."""
    prompts = tmp_path / "held-out.txt"
    prompts.write_text("".join(p + "\n" for p in HELD_OUT[:48]))
    common = ["--model", "toy", "--steps", "10", "--quiet"]
    assert dice("sample", prompts, *common, "-o", tmp_path / "unguided").code == 0
    assert dice("sample", prompts, *common, "--enhancer", "toy", "-o", tmp_path / "dice").code == 0
    result = dice("eval", tmp_path / "unguided", tmp_path / "dice", "--metrics", "toy", "--format", "json")
    assert result.code == 0, result.stderr
    unguided, enhanced = (row["alignment"] for row in json.loads(result.stdout)["rows"])
    assert enhanced >= unguided + 0.03, (unguided, enhanced)  # measured: +6.7 points


@pytest.mark.slow
def test_short_distill_reduces_guidance_error(dice, toy, held_out, tmp_path):
    """About a minute on 2 CPU cores: 40 steps x 16 on a latent cache of 512 training scenes.

    The issue asks for a 30 % reduction; on this model a full GPU distillation gives about 15 % and a
    per-prompt oracle about 26 % (docs/toyworld.md), so this asserts the direction, with a margin.
    """
    _, cond, null, latents = held_out
    cache, out = tmp_path / "latents.h5", tmp_path / "short.safetensors"
    assert dice("encode", "--images", "toy:512", "-o", cache, "--model", "toy", "--quiet").code == 0
    result = dice("distill", "--model", "toy", "--data", cache, "--steps", "40", "--batch-size", "16",
                  "--lr", "3e-3", "--negative-prompts", "none", "--no-validate", "--work-dir", tmp_path / "run",
                  "-o", out, "--quiet")
    assert result.code == 0, result.stderr
    enhancer, _ = load_enhancer(out)
    before, after = guidance_error(toy, enhancer, latents, cond, null, 5.0, seed=0)
    assert after < 0.996 * before, (before, after)  # measured: 0.74 % less (80 steps: 1.75 %)
