"""More of the bad-input battery (docs/reliability.md, "Reliability"): models, training data, sample folders and counts that
a new user gets wrong. Each: exit 2, the file or option named with the fix, no traceback, nothing written."""

import json

import pytest

from helpers import write_imagefolder

pytestmark = pytest.mark.reliability("bad input")


def refused(result, *needles):
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_folder_without_model_index(dice, prompts_file, tmp_path):
    (tmp_path / "weights").mkdir()
    refused(dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", tmp_path / "weights"),
            "is not a diffusers pipeline (no model_index.json)")
    assert not (tmp_path / "x.h5").exists()


@pytest.fixture
def imagefolder(tmp_path):
    return write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog", "a green house"])


@pytest.mark.parametrize("damage, needles", [
    ("corrupt-png", ["000001.png cannot be read", "remove it from the data or replace it"]),
    ("missing-image", ["lists 1 missing images", "000001.png", "fix metadata.jsonl"]),
    ("broken-metadata-line", ["metadata.jsonl line 2 needs JSON", "fix that line"]),
])
@pytest.mark.parametrize("command", ["encode", "distill"])
def test_damaged_training_data(dice, imagefolder, tmp_path, damage, needles, command):
    if damage == "corrupt-png":
        (imagefolder / "000001.png").write_bytes(b"not a png")
    elif damage == "missing-image":
        (imagefolder / "000001.png").unlink()
    else:
        lines = (imagefolder / "metadata.jsonl").read_text().splitlines()
        (imagefolder / "metadata.jsonl").write_text("\n".join([lines[0], "{broken", *lines[2:]]) + "\n")
    if command == "encode":
        result = dice("encode", "--images", imagefolder, "-o", tmp_path / "latents.h5", "--model", "tiny-sd15")
    else:
        result = dice("distill", "--model", "tiny-sd15", "--data", imagefolder, "--steps", "1", "--batch-size", "3",
                      "--no-validate", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    refused(result, *needles)
    assert not (tmp_path / "latents.h5").exists() and not (tmp_path / "e.safetensors").exists()


@pytest.mark.parametrize("argv, option", [
    (["encode", "PROMPTS", "-o", "x.h5", "--model", "tiny-sd15", "--batch-size", "0"], "--batch-size"),
    (["sample", "PROMPTS", "--model", "tiny-sd15", "--batch-size", "-2", "-o", "s"], "--batch-size"),
    (["distill", "--model", "tiny-sd15", "--data", "DATA", "--steps", "-1", "-o", "e.safetensors"], "--steps"),
    (["distill", "--model", "tiny-sd15", "--data", "DATA", "--checkpoint-every", "0", "-o", "e.safetensors"],
     "--checkpoint-every"),
    (["sample", "PROMPTS", "--model", "tiny-sd15", "--num-per-prompt", "0", "-o", "s"], "--num-per-prompt"),
])
def test_counts_below_one(dice, prompts_file, imagefolder, tmp_path, argv, option):
    argv = [str(prompts_file) if a == "PROMPTS" else str(imagefolder) if a == "DATA" else a for a in argv]
    result = dice(*argv)
    refused(result, option)
    assert not any((tmp_path / name).exists() for name in ("x.h5", "s", "e.safetensors"))


def test_eval_of_an_empty_folder(dice, tmp_path):
    (tmp_path / "empty").mkdir()
    refused(dice("eval", tmp_path / "empty", "--metrics", "fid", "--ref", tmp_path / "empty", "--fid-features",
                 "tiny-random"), "holds no images")


def test_a_10000_character_prompt_is_truncated_with_a_warning(dice, tmp_path):
    """Not an error: encoded like the pipeline (first 77 tokens), and said."""
    prompts = tmp_path / "long.txt"
    prompts.write_text("a " * 5000 + "\n")
    result = dice("encode", prompts, "-o", tmp_path / "long.h5", "--model", "tiny-sd15", "--json")
    assert result.code == 0 and "longer than 77 tokens and were truncated" in result.stderr
    assert json.loads(result.stdout)["truncated"] == 1


def test_comfyui_install_into_a_folder_that_is_not_comfyui(dice, tmp_path):
    (tmp_path / "ComfyUI").mkdir()
    refused(dice("comfyui", "install", tmp_path / "ComfyUI"), "is not a ComfyUI folder (it has no custom_nodes/)",
            "give the ComfyUI checkout")
    assert [p.name for p in (tmp_path / "ComfyUI").iterdir()] == []
