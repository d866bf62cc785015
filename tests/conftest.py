"""Shared fixtures and hooks: an isolated, offline environment, tiny models, an in-process `dice` runner, and the
reliability battery's count. Helpers the tests call are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import helpers
from helpers import random_enhancer_file, run_dice, variant_model



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


@pytest.fixture
def dice():
    return run_dice


@pytest.fixture(autouse=True)
def no_raw_exception_text(request):
    """Every error a reliability case provokes is one sentence of dicecli's, never raw exception text."""
    helpers.OUTPUTS.clear()
    yield
    if request.node.get_closest_marker("reliability"):
        raw = [text for text in helpers.OUTPUTS  # --debug asks for the traceback, and gets it
               if helpers.RAW_EXCEPTION.search(text) and "Traceback (most recent call last)" not in text]
        assert not raw, f"raw exception text reached the user: {raw[0][-500:]}"


@pytest.fixture(scope="session")
def tiny_sd15_dir(offline_home) -> Path:
    from dicecli.builtin import ensure_builtin

    return ensure_builtin("tiny-sd15")


@pytest.fixture(scope="session")
def other_sd15_dir(tiny_sd15_dir, tmp_path_factory) -> Path:
    """A copy of tiny-sd15 whose text encoder has other weights (a 'different model')."""
    from transformers import CLIPTextModel

    return variant_model(tiny_sd15_dir, tmp_path_factory.mktemp("other") / "other-sd15", CLIPTextModel, "text_encoder", 0.05)


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

    from dicecli.miniatures import clip_byte_tokenizer

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
    return random_enhancer_file(tmp_path_factory.mktemp("enhancer") / "tiny-enh.safetensors", guidance_scale=5.0,
                                negative_prompts="builtin-v1", loss="l1", steps=1, batch_size=1)


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
