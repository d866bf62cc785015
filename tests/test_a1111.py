"""Sampled PNGs carry an AUTOMATIC1111 `parameters` chunk that a third-party reader (sd-parsers, from the package
index) recognises as A1111's own: prompt, negative, steps, sampler by A1111's name, CFG, seed, size, model and
its hash where known, and the DICE keys after them."""

import hashlib

import pytest
from PIL import Image
from sd_parsers import ParserManager
from sd_parsers.data import Generators

from ldm_checkpoint import write_single_file


def parse(path):
    info = ParserManager().parse(str(path))
    assert info is not None and info.generator == Generators.AUTOMATIC1111, info
    return info


def test_dice_image_reads_as_an_a1111_image(dice, prompts_file, enhancer_file, tmp_path):
    out = tmp_path / "s"
    assert dice("sample", prompts_file, "--enhancer", enhancer_file, "--negative", "blurry, bad hands", "--steps", "3",
                "--seed", "7", "-o", out).code == 0
    info = parse(out / "000001.png")
    sampler = info.samplers[0]
    assert sampler.name == "DPM++ 2M" and sampler.model.name == "tiny-sd15"
    assert sampler.parameters["steps"] == "3" and sampler.parameters["seed"] == "8" and sampler.parameters["cfg_scale"] == "1.0"
    assert [p.value for p in sampler.prompts] == ["a blue dog on a beach"]
    assert [p.value for p in sampler.negative_prompts] == ["blurry, bad hands"]
    text = Image.open(out / "000001.png").text["parameters"]
    lines = text.splitlines()
    assert lines[:2] == ["a blue dog on a beach", "Negative prompt: blurry, bad hands"]
    sha = hashlib.sha256(enhancer_file.read_bytes()).hexdigest()
    assert lines[2] == ("Steps: 3, Sampler: DPM++ 2M, Schedule type: Uniform, CFG scale: 1.0, Seed: 8, Size: 32x32, "
                        f"Model: tiny-sd15, DICE enhancer: tiny-enh.safetensors, DICE enhancer hash: {sha[:10]}, DICE alpha: 1.0")
    assert info.metadata["Size"] == "32x32"


@pytest.mark.parametrize("scheduler, a1111", [("euler-a", "Euler a"), ("pndm", "PLMS"), ("ddim", "DDIM")])
def test_no_negative_prompt_writes_no_line_and_samplers_take_a1111_names(dice, prompts_file, tmp_path, scheduler, a1111):
    out = tmp_path / "s"
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--cfg", "5", "--scheduler", scheduler, "--steps", "2",
                "-o", out).code == 0
    text = Image.open(out / "000000.png").text["parameters"]
    assert "Negative prompt" not in text and text.splitlines()[0] == "a red cat"
    info = parse(out / "000000.png")
    assert info.samplers[0].name == a1111 and info.samplers[0].negative_prompts == []
    assert info.samplers[0].parameters["cfg_scale"] == "5.0"


def test_a_single_file_model_is_named_with_its_a1111_hash(dice, prompts_file, tiny_sd15_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15_dir, safety_checker=None, requires_safety_checker=False)
    checkpoint = write_single_file(pipe, tmp_path / "tinyShaper_v1.safetensors")
    recipe = tmp_path / "tiny-shaper.toml"
    recipe.write_text(f'name = "tiny-shaper"\nfamily = "sd15"\n[source]\npath = "{checkpoint}"\nconfig = "{tiny_sd15_dir}"\n')
    out = tmp_path / "s"
    assert dice("sample", prompts_file, "--model", recipe, "--steps", "2", "-o", out).code == 0
    model = parse(out / "000000.png").samplers[0].model
    assert model.hash == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]  # A1111's "AutoV2" model hash
    assert model.name == "tiny-shaper"
