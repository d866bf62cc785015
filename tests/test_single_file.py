"""Single-file (original layout) checkpoints, as community models are shared, through diffusers' from_single_file."""

import h5py
import numpy as np
import pytest
from PIL import Image

from ldm_checkpoint import write_single_file


@pytest.fixture(scope="module")
def checkpoint(tiny_sd15_dir, tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15_dir, safety_checker=None, requires_safety_checker=False)
    return write_single_file(pipe, tmp_path_factory.mktemp("ckpt") / "tinyShaper_v1.safetensors")


@pytest.fixture
def recipe(checkpoint, tiny_sd15_dir, tmp_path):
    path = tmp_path / "tiny-shaper.toml"
    path.write_text(f'name = "tiny-shaper"\nfamily = "sd15"\n[source]\npath = "{checkpoint}"\nconfig = "{tiny_sd15_dir}"\n')
    return path


def test_family_detected_from_tensor_names(checkpoint):
    from dicecli.refs import resolve_model

    ref = resolve_model(str(checkpoint))
    assert (ref.source.single_file, ref.family, ref.source.config) == (True, "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5")


def test_single_file_encodes_and_samples_like_the_folder(dice, prompts_file, recipe, tmp_path):
    for name, model in (("file", recipe), ("folder", "tiny-sd15")):
        assert dice("encode", prompts_file, "-o", tmp_path / f"{name}.h5", "--model", model).code == 0
        result = dice("sample", prompts_file, "--model", model, "--steps", "3", "-o", tmp_path / name)
        assert result.code == 0, result.stderr
    with h5py.File(tmp_path / "file.h5") as a, h5py.File(tmp_path / "folder.h5") as b:
        np.testing.assert_array_equal(a["prompt_embeds"][:], b["prompt_embeds"][:])
        assert a.attrs["text_encoder_fingerprint"] == b.attrs["text_encoder_fingerprint"]
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "file" / f"{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "folder" / f"{i:06d}.png"))
        assert np.array_equal(a, b)


def test_single_file_without_its_config_offline(dice, prompts_file, checkpoint, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", checkpoint)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in result.stderr and "HF_HUB_OFFLINE" in result.stderr


def test_other_checkpoints_are_refused_by_name(dice, prompts_file, tmp_path):
    from safetensors.torch import save_file
    import torch

    odd = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(2)}, str(odd))
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", odd)
    assert result.code == 2 and "not a checkpoint of a supported family (sd15, sdxl)" in result.stderr
