"""Shared fixtures: an isolated, offline environment and an in-process `dice` runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

SESSION_HOME = None


@pytest.fixture(scope="session", autouse=True)
def offline_home(tmp_path_factory):
    """Every test runs offline, with its own dicecli home and an empty Hugging Face cache."""
    home = tmp_path_factory.mktemp("dice-home")
    hf = tmp_path_factory.mktemp("hf-home")
    saved = {k: os.environ.get(k) for k in ("DICE_HOME", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "DICE_CHECKPOINTS_DIR")}
    os.environ.update(DICE_HOME=str(home), HF_HOME=str(hf), HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hf / "hub"))
    os.environ.pop("DICE_CHECKPOINTS_DIR", None)
    import huggingface_hub.constants as hub_constants

    hub_constants.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_CACHE = str(hf / "hub")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
        return Result(code, out.getvalue(), err.getvalue().decode())


def run_dice_process(*args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m dicecli ARGS` as a separate process (for stdout piping and signals)."""
    return subprocess.run([sys.executable, "-m", "dicecli", *map(str, args)], input=input,
                          capture_output=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture
def dice():
    return run_dice


@pytest.fixture(scope="session")
def tiny_sd15_dir(offline_home) -> Path:
    from dicecli.builtin import ensure_builtin

    return ensure_builtin("tiny-sd15")


@pytest.fixture(scope="session")
def other_sd15_dir(tiny_sd15_dir, tmp_path_factory) -> Path:
    """A copy of tiny-sd15 whose text encoder has other weights (a 'different model')."""
    from transformers import CLIPTextModel

    return variant_model(tiny_sd15_dir, tmp_path_factory.mktemp("other") / "other-sd15", CLIPTextModel, "text_encoder", 0.05)


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


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("a red cat\n\na blue dog on a beach\na green house\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A random-weight CLIP (model + processor) built from configs, standing in for CLIP ViT-g/14 and ViT-L/14."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from dicecli.families.tiny import clip_byte_tokenizer

    tokenizer = clip_byte_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_aesthetic_weights(tmp_path_factory) -> Path:
    """Aesthetic-predictor weights for the tiny CLIP (32-dim embeddings), saved as the published .pth is: a state dict."""
    import torch

    from dicecli.evaluate import AestheticPredictor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("aesthetic") / "tiny-aesthetic.pth"
    torch.save(AestheticPredictor(32).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def enhancer_file(tmp_path_factory) -> Path:
    """A non-trivial enhancer for tiny-sd15: random weights, whose effect (not quality) tests measure."""
    import torch

    from dicecli.enhancer import Enhancer, save_enhancer

    torch.manual_seed(0)
    enhancer = Enhancer(32)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("enhancer") / "tiny-enh.safetensors"
    save_enhancer(enhancer, path, family="sd15", tokens=77, trained_on="tiny-sd15", guidance_scale=5.0,
                  negative_prompts="builtin-v1", loss="l1", steps=1, batch_size=1)
    return path


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="Also run the end-to-end tests marked slow (CI does).")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end test (kills, learning, long pipelines); runs with --slow")
    config.addinivalue_line("markers", "reliability(kind): a case of the reliability battery (docs/reliability.md), "
                                       "counted in the summary")


RELIABILITY = {}  # test id -> kind, for the cases of the reliability battery
RELIABILITY_PASSED: dict[str, int] = {}


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and report.nodeid in RELIABILITY:
        kind = RELIABILITY[report.nodeid]
        RELIABILITY_PASSED[kind] = RELIABILITY_PASSED.get(kind, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if RELIABILITY_PASSED:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(RELIABILITY_PASSED.items()))
        terminalreporter.write_line(f"reliability battery passed: {counts}")


def pytest_collection_modifyitems(config, items):
    """The default run is the fast set; `--slow` adds the end-to-end tests."""
    for item in items:
        marker = item.get_closest_marker("reliability")
        if marker:
            RELIABILITY[item.nodeid] = marker.args[0]
    if config.getoption("--slow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


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

    from dicecli.enhancer import load_enhancer, read_metadata
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
    enhancer, _ = load_enhancer(out)
    cond = adapter.encode(held_out).conditioning
    x0 = torch.randn(len(held_out), 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.8
    plain, enhanced = guidance_error(adapter, enhancer, x0, cond, adapter.null(), 5.0, seed=7)
    return read_metadata(out), plain, enhanced
