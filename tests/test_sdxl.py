"""The `sdxl` family on `tiny-sdxl`: encoding, sampling parity with diffusers, distillation, caches, transfer."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dicecli.loading import HubSource

from helpers import grid_size, variant_model, write_imagefolder

PROMPTS = ["a red cat", "a blue dog on a beach", "a green house"]


@pytest.fixture(scope="module")
def tiny_sdxl_dir(offline_home):
    from dicecli.builtin import ensure_builtin

    return ensure_builtin("tiny-sdxl")


def diffusers_pipeline(folder):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixels(folder, count):
    return [np.asarray(Image.open(folder / f"{i:06d}.png").convert("RGB")) for i in range(count)]


def test_encode_equals_sdxl_encode_prompt(dice, prompts_file, tiny_sdxl_dir, tmp_path):
    import h5py

    out = tmp_path / "emb.h5"
    result = dice("encode", prompts_file, "-o", out, "--model", "tiny-sdxl", "--negative", "blurry", "--json")
    assert result.code == 0, result.stderr
    assert (json.loads(result.stdout)["tokens"], json.loads(result.stdout)["context_dim"]) == (77, 64)
    pipe = diffusers_pipeline(tiny_sdxl_dir)
    with torch.no_grad():
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            PROMPTS, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=["blurry"] * 3)
    with h5py.File(out) as f:
        assert f.attrs["family"] == "sdxl"
        np.testing.assert_array_equal(f["prompt_embeds"][:], embeds.numpy())
        np.testing.assert_array_equal(f["pooled_prompt_embeds"][:], pooled.numpy())
        # encoded alone, not in a batch of three: equal to float rounding
        np.testing.assert_allclose(f["negative_prompt_embeds"][0], negative[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(f["negative_pooled_prompt_embeds"][0], negative_pooled[0].numpy(), atol=1e-5)


def test_dice_null_input_is_the_encoded_empty_prompt_and_cfg_negative_is_zeros(tiny_sdxl_dir):
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model("tiny-sdxl"), torch.device("cpu"), torch.float32)
    null = adapter.null()
    assert null.prompt_embeds.abs().sum() > 0 and null.pooled_prompt_embeds.abs().sum() > 0
    zeros = adapter.unconditional(None)
    assert zeros.prompt_embeds.abs().sum() == 0 and zeros.pooled_prompt_embeds.abs().sum() == 0
    assert torch.equal(adapter.unconditional("blurry").prompt_embeds, adapter.negative("blurry").prompt_embeds)


def test_enhance_pipes_into_sample_with_pooled_embeddings(dice, prompts_file, tmp_path):
    """`dice enhance -o - | dice sample -` for SDXL: the enhancer changes the token sequence only; pooled
    embeddings (and the negative's) travel through the cache unchanged."""
    import h5py

    from dicecli.enhancer import Enhancer, save_enhancer

    torch.manual_seed(0)
    enhancer = Enhancer(64)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, 0.1)
    path = tmp_path / "xl.safetensors"
    save_enhancer(enhancer, path, family="sdxl", tokens=77, trained_on="tiny-sdxl", guidance_scale=5.0,
                  negative_prompts="null", loss="l2", steps=1, batch_size=1)
    enhanced = dice("enhance", prompts_file, "-o", "-", "--enhancer", path)
    assert enhanced.code == 0, enhanced.stderr
    cache, plain = tmp_path / "enh.h5", tmp_path / "plain.h5"
    cache.write_bytes(enhanced.stdout_bytes)
    assert dice("encode", prompts_file, "-o", plain, "--model", "tiny-sdxl").code == 0
    with h5py.File(cache) as e, h5py.File(plain) as p:
        assert e.attrs["enhancer"] == "xl.safetensors" and e.attrs["family"] == "sdxl"
        np.testing.assert_array_equal(e["pooled_prompt_embeds"][:], p["pooled_prompt_embeds"][:])
        np.testing.assert_array_equal(e["prompt_embeds"][:, 0], p["prompt_embeds"][:, 0])  # first token kept
        assert np.abs(e["prompt_embeds"][:, 1:] - p["prompt_embeds"][:, 1:]).max() > 1e-3
        assert "negative_pooled_prompt_embeds" in e
    sampled = dice("sample", "-", "--cfg", "1", "--steps", "3", "-o", tmp_path / "out", "--json",
                   input=enhanced.stdout_bytes)
    assert sampled.code == 0, sampled.stderr
    summary = json.loads(sampled.stdout)
    assert summary["generated"] == 3 and summary["nfe_per_image"] == 3


def test_vae_option_replaces_the_pipelines_vae(dice, tmp_path, tiny_sdxl_dir):
    """--vae (e.g. an fp16-fix VAE): latents come from the given VAE, not the pipeline's."""
    import h5py
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_sdxl_dir / "vae")
    with torch.no_grad():
        for p in vae.encoder.parameters():
            p.mul_(1.5)
    vae.save_pretrained(tmp_path / "fixed-vae")
    folder = write_imagefolder(tmp_path / "images", ["thing 0", "thing 1"], seed=0)
    stock, fixed = tmp_path / "stock.h5", tmp_path / "fixed.h5"
    assert dice("encode", "--images", folder, "-o", stock, "--model", "tiny-sdxl").code == 0
    result = dice("encode", "--images", folder, "-o", fixed, "--model", "tiny-sdxl", "--vae", tmp_path / "fixed-vae")
    assert result.code == 0, result.stderr
    with h5py.File(stock) as a, h5py.File(fixed) as b:
        assert a["latents"].shape == b["latents"].shape == (2, 4, 16, 16)
        assert np.abs(a["latents"][:] - b["latents"][:]).max() > 1e-3
    missing = dice("encode", "--images", folder, "-o", tmp_path / "x.h5", "--model", "tiny-sdxl", "--vae", tmp_path / "nope")
    assert missing.code == 2 and "--vae" in missing.stderr and "Traceback" not in missing.stderr


def test_single_file_sdxl_checkpoint_is_detected_from_tensor_names(tmp_path):
    from safetensors.torch import save_file

    from dicecli.refs import resolve_model

    path = tmp_path / "community-xl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}, str(path))
    ref = resolve_model(str(path))
    assert (ref.source.single_file, ref.family, ref.source.config) == (True, "sdxl", "stabilityai/stable-diffusion-xl-base-1.0")




def test_sdxl_recipes_hub_fine_tunes_and_a_single_file_checkpoint(dice, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from dicecli.refs import resolve_model

    rows = {r["name"]: r for r in json.loads(dice("recipes", "--json").stdout)}
    sdxl = {name for name, row in rows.items() if row["family"] == "sdxl"}
    assert {"sdxl", "juggernaut-xl", "realvisxl", "animagine-xl", "tiny-sdxl"} <= sdxl
    assert isinstance(resolve_model("juggernaut-xl").source, HubSource)
    monkeypatch.setenv("DICE_CHECKPOINTS_DIR", str(tmp_path))
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, str(tmp_path / "animagine-xl-3.1.safetensors"))
    ref = resolve_model("animagine-xl")
    assert (ref.source.single_file, ref.family, ref.source.config) == (True, "sdxl", "stabilityai/stable-diffusion-xl-base-1.0")
    from dicecli.settings import DistillConfig

    config = DistillConfig.resolve(ref.family, ref.recipe)
    data = config.data
    assert (config.loss, config.steps, config.resolution, config.batch_size, config.lr, data) == \
        ("l2", 4000, 1024, 128, 2e-4, "coco2017-train")


def test_recipe_vae_and_vae_option(tmp_path, tiny_sdxl_dir):
    from dicecli.refs import resolve_model

    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'name = "mine"\nfamily = "sdxl"\n[source]\npath = "{tiny_sdxl_dir}"\nvae = "/models/fixed-vae"\n')
    assert resolve_model(str(recipe)).vae == "/models/fixed-vae"
    assert resolve_model(str(recipe), vae="other/vae").vae == "other/vae"
    assert resolve_model("tiny-sdxl").vae is None


def test_transfer_between_sdxl_models(dice, prompts_file, tmp_path, tiny_sdxl_dir):
    """An SDXL enhancer on SDXL variants: sample folders per (model, enhancer), grid and report."""
    from transformers import CLIPTextModelWithProjection

    from dicecli.enhancer import Enhancer, save_enhancer

    variant = variant_model(tiny_sdxl_dir, tmp_path / "variant-xl", CLIPTextModelWithProjection, "text_encoder_2", 0.02)
    torch.manual_seed(0)
    enhancer = Enhancer(64)
    with torch.no_grad():
        enhancer.fc2.weight.normal_(0, 0.05)
    path = tmp_path / "xl.safetensors"
    save_enhancer(enhancer, path, family="sdxl", tokens=77, trained_on="tiny-sdxl", guidance_scale=5.0,
                  negative_prompts="null", loss="l2", steps=1, batch_size=1)
    result = dice("transfer", path, prompts_file, "--to", f"tiny-sdxl,{variant}", "--steps", "2", "-o", tmp_path / "t",
                  "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["folders"]) == 4  # (unguided, xl) x two models
    report = {e["target"]: e["sources"][0] for e in summary["compatibility"]}
    assert report["tiny-sdxl"]["same_text_encoder"] and report["tiny-sdxl"]["mean_cosine"] == pytest.approx(1.0)
    assert not report[str(variant)]["same_text_encoder"] and report[str(variant)]["mean_cosine"] < 1.0
    assert Image.open(tmp_path / "t" / "grid.png").size == grid_size(["unguided", "xl"], 2 * 3, 32, row_titles=True)
