"""The `pixart` family on `tiny-pixart`: T5 encoding with masks, sampling parity with diffusers, the
transformer's learned variance and micro-conditions, distillation, caches, transfer and refusals."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dicecli.loading import HubSource

from helpers import variant_model

PROMPTS = ["a red cat", "a blue dog on a beach", "a green house"]


@pytest.fixture(scope="module")
def tiny_pixart_dir(offline_home):
    from dicecli.builtin import ensure_builtin

    return ensure_builtin("tiny-pixart")


@pytest.fixture(scope="module")
def pixart_1024_dir(tmp_path_factory, offline_home):
    """A tiny model shaped like PixArt-XL-2-1024-MS: sample size 128 (resolution and aspect-ratio conditions,
    1024-px aspect bins, multiples of 32 px) over an 8x VAE; 4x4 patches keep it near 1,000 tokens."""
    from dicecli.miniatures import tiny_pixart

    folder = tmp_path_factory.mktemp("pixart-1024") / "tiny-pixart-1024"
    tiny_pixart(sample_size=128, patch_size=4, vae_blocks=4).save_pretrained(folder)
    return folder


def diffusers_pipeline(folder):
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline

    pipe = PixArtAlphaPipeline.from_pretrained(folder)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def adapter_for(model):
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    return load_adapter(resolve_model(str(model)), torch.device("cpu"), torch.float32)


def pixels(folder, count):
    return [np.asarray(Image.open(folder / f"{i:06d}.png").convert("RGB")).astype(int) for i in range(count)]


def random_enhancer(width=32, mask="prompt", scale=0.1):
    from dicecli.enhancer import Enhancer

    torch.manual_seed(0)
    enhancer = Enhancer(width, keep_first_token=False, enhanced_mask=mask)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, scale)
    return enhancer


def save_pixart_enhancer(enhancer, path):
    from dicecli.enhancer import save_enhancer

    save_enhancer(enhancer, path, family="pixart", tokens=120, trained_on="tiny-pixart", guidance_scale=5.0,
                  negative_prompts="null", loss="l2", steps=1, batch_size=1)
    return path


def test_encode_equals_pixart_encode_prompt(dice, prompts_file, tiny_pixart_dir, tmp_path):
    """Embeddings and attention masks as PixArtAlphaPipeline.encode_prompt (clean_caption off), negatives too."""
    import h5py

    prompts_file.write_text("A Red Cat \n\na blue dog on a beach\na green house\n")
    out = tmp_path / "emb.h5"
    result = dice("encode", prompts_file, "-o", out, "--model", "tiny-pixart", "--negative", "Blurry", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["tokens"], summary["context_dim"]) == (120, 32)
    pipe = diffusers_pipeline(tiny_pixart_dir)
    with torch.no_grad():
        embeds, mask, negative, negative_mask = pipe.encode_prompt(
            ["A Red Cat ", "a blue dog on a beach", "a green house"], negative_prompt="Blurry", clean_caption=False,
            device="cpu")
    with h5py.File(out) as f:
        assert f.attrs["family"] == "pixart"
        np.testing.assert_array_equal(f["prompt_embeds"][:], embeds.numpy())
        np.testing.assert_array_equal(f["attention_mask"][:], mask.numpy())
        assert list(f["attention_mask"][:].sum(axis=1)) == [8, 17, 12]  # characters + "</s>": prompts are lower-cased
        np.testing.assert_allclose(f["negative_prompt_embeds"][0], negative[0].numpy(), atol=1e-5)
        np.testing.assert_array_equal(f["negative_attention_mask"][0], negative_mask[0].numpy())


def test_1024_model_samples_as_the_pipeline_with_micro_conditions_and_bins(dice, pixart_1024_dir, tmp_path):
    """The 1024 models: the pipeline's defaults (aspect-ratio binning, resolution conditioning) are dice's.
    768x1024 is generated at its bin's 864x1152 and resized back, as the pipeline does."""
    out = tmp_path / "s"
    result = dice("sample", "-", "--model", pixart_1024_dir, "--cfg", "4.5", "--steps", "2", "--seed", "3",
                  "--height", "1024", "--width", "768", "-o", out, input="a red cat\n")
    assert result.code == 0, result.stderr
    pipe = diffusers_pipeline(pixart_1024_dir)
    expected = pipe("a red cat", guidance_scale=4.5, num_inference_steps=2, height=1024, width=768, clean_caption=False,
                    generator=torch.Generator().manual_seed(3)).images
    (got,) = pixels(out, 1)
    assert got.shape == (1024, 768, 3)
    assert np.abs(got - np.asarray(expected[0]).astype(int)).max() <= 1


@pytest.mark.parametrize("model", ["tiny-pixart", "pixart_1024_dir"])
def test_denoise_is_the_pipelines_transformer_call_without_the_variance(model, request, tiny_pixart_dir):
    """What DICE trains against: the adapter's denoiser call gives the noise half of exactly what the pipeline's
    transformer returns (masks, timesteps, resolution/aspect-ratio conditions), captured during a real call."""
    from dicecli.method import cfg_combine

    folder = tiny_pixart_dir if model == "tiny-pixart" else request.getfixturevalue(model)
    pipe, adapter = diffusers_pipeline(folder), adapter_for(folder)
    calls = []
    pipe.transformer.register_forward_hook(lambda module, args, kwargs, out: calls.append((args, kwargs, out[0])),
                                           with_kwargs=True)
    size = 32 if model == "tiny-pixart" else 1024
    pipe(PROMPTS[:2], guidance_scale=4.5, num_inference_steps=2, height=size, width=size, clean_caption=False,
         use_resolution_binning=False, output_type="latent", generator=torch.Generator().manual_seed(0))
    (latents,), kwargs, out = calls[0]
    assert out.shape[1] == 8 and latents.shape[1] == 4  # noise and learned variance
    has_conditions = kwargs["added_cond_kwargs"]["resolution"] is not None
    assert has_conditions == (model != "tiny-pixart")
    cond = adapter.encode(PROMPTS[:2]).conditioning
    both = adapter.denoise(latents, kwargs["timestep"][:1].expand(4), type(cond).cat([adapter.null().repeat(2), cond]))
    assert both.shape[1] == 4
    torch.testing.assert_close(both, out[:, :4], atol=1e-5, rtol=1e-5)
    uncond, text = both.chunk(2)
    guided = cfg_combine(text, uncond, 4.5)
    want_uncond, want_text = out.chunk(2)
    torch.testing.assert_close(guided, (want_uncond + 4.5 * (want_text - want_uncond))[:, :4], atol=1e-4, rtol=1e-4)


def test_enhancer_parameter_formula_and_mask_choice_in_metadata(tmp_path):
    from dicecli.enhancer import Enhancer, read_enhancer, parameter_count, read_metadata

    for width in (32, 4096):
        assert parameter_count(Enhancer(width)) == 1025 * width + 1_049_600
    assert parameter_count(Enhancer(4096)) == 5_248_000
    path = save_pixart_enhancer(random_enhancer(mask="all"), tmp_path / "e.safetensors")
    meta = read_metadata(path)
    assert (meta["keep_first_token"], meta["enhanced_mask"]) == (False, "all")
    assert read_enhancer(path)[0].enhanced_mask == "all"


def test_family_text_spec_records_the_measured_choice(tiny_pixart_dir):
    adapter = adapter_for("tiny-pixart")
    text = adapter.text
    assert (text.tokens, text.width, text.mask, text.keep_first_token) == (120, 32, True, False)
    assert text.enhanced_mask == "prompt"  # benchmarks/results/pixart-mask-choice-cpu.json
    from dicecli.families import adapter_class
    from dicecli.refs import resolve_model

    assert adapter_class("pixart").text_from_configs(resolve_model("tiny-pixart").source) == text


@pytest.mark.parametrize("mask", ["prompt", "all"])
def test_apply_enhancer_keeps_or_widens_the_mask(mask, tiny_pixart_dir):
    from dicecli.method import apply_enhancer

    adapter = adapter_for("tiny-pixart")
    cond = adapter.encode(PROMPTS).conditioning
    enhancer = random_enhancer(mask=mask)
    with torch.no_grad():
        enhanced = apply_enhancer(enhancer, cond, adapter.null())
        identity = apply_enhancer(enhancer, cond, adapter.null(), alpha=0.0)
    assert torch.equal(identity.prompt_embeds, cond.prompt_embeds)
    assert (enhanced.prompt_embeds[:, 0] - cond.prompt_embeds[:, 0]).abs().max() > 1e-3  # no start token to keep
    if mask == "prompt":
        assert torch.equal(enhanced.attention_mask, cond.attention_mask)
    else:
        assert enhanced.attention_mask.all() and not cond.attention_mask.all()
    assert torch.equal(enhanced.eos_index, cond.eos_index)


def test_enhance_pipes_into_sample_with_masks(dice, prompts_file, tmp_path, tiny_pixart_dir):
    """`dice enhance -o - | dice sample -`: the masks (prompt's and negative's) travel through the cache, and
    sampling the enhanced cache equals sampling the prompts with --enhancer."""
    import h5py

    path = save_pixart_enhancer(random_enhancer(mask="all"), tmp_path / "px.safetensors")
    enhanced = dice("enhance", prompts_file, "-o", "-", "--enhancer", path)
    assert enhanced.code == 0, enhanced.stderr
    cache, plain = tmp_path / "enh.h5", tmp_path / "plain.h5"
    cache.write_bytes(enhanced.stdout_bytes)
    assert dice("encode", prompts_file, "-o", plain, "--model", "tiny-pixart").code == 0
    with h5py.File(cache) as e, h5py.File(plain) as p:
        assert e.attrs["enhancer"] == "px.safetensors" and e.attrs["family"] == "pixart"
        assert e["attention_mask"][:].all() and not p["attention_mask"][:].all()  # widened by this enhancer
        assert e["negative_attention_mask"][0].tolist() == [1] + [0] * 119  # the null prompt: "</s>" alone
        assert np.abs(e["prompt_embeds"][:] - p["prompt_embeds"][:]).max() > 1e-3
    piped = dice("sample", "-", "--steps", "3", "-o", tmp_path / "piped", "--json", input=enhanced.stdout_bytes)
    assert piped.code == 0, piped.stderr
    assert json.loads(piped.stdout)["nfe_per_image"] == 3
    direct = dice("sample", prompts_file, "--model", "tiny-pixart", "--enhancer", path, "--steps", "3",
                  "-o", tmp_path / "direct")
    assert direct.code == 0, direct.stderr
    for a, b in zip(pixels(tmp_path / "piped", 3), pixels(tmp_path / "direct", 3)):
        assert np.abs(a - b).max() <= 1


def test_encode_and_enhance_load_only_the_text_side_in_the_models_dtype(dice, prompts_file, tmp_path, tiny_pixart_dir,
                                                                       monkeypatch):
    """T5-XXL is 4.7 B parameters: it loads in the requested dtype, and encode/enhance never load the
    transformer or the VAE."""
    from dicecli.loading import Components

    loaded = []
    real = Components._load_pipeline

    def recording(self, wanted):
        pipe = real(self, wanted)
        loaded.append((tuple(wanted), {n: getattr(pipe, n).dtype for n in wanted if hasattr(getattr(pipe, n), "dtype")}))
        return pipe

    monkeypatch.setattr(Components, "_load_pipeline", recording)
    assert dice("encode", prompts_file, "-o", tmp_path / "e.h5", "--model", "tiny-pixart", "--dtype", "bf16").code == 0
    path = save_pixart_enhancer(random_enhancer(), tmp_path / "px.safetensors")
    assert dice("enhance", prompts_file, "-o", tmp_path / "x.h5", "--enhancer", path, "--dtype", "bf16").code == 0
    assert {name for wanted, _ in loaded for name in wanted} == {"text_encoder", "tokenizer"}
    encoders = [dtypes["text_encoder"] for wanted, dtypes in loaded if "text_encoder" in wanted]
    assert encoders == [torch.bfloat16] * 2  # once per command


def test_cross_family_transfer_is_refused_before_weights_load(dice, prompts_file, enhancer_file, tmp_path, monkeypatch,
                                                              tiny_pixart_dir):
    from dicecli.loading import Components

    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"loaded {wanted}"))
    result = dice("transfer", enhancer_file, prompts_file, "--to", "tiny-pixart", "-o", tmp_path / "t")
    assert result.code == 2 and "sd15 family" in result.stderr and "tiny-pixart (pixart)" in result.stderr
    pixart_enhancer = save_pixart_enhancer(random_enhancer(), tmp_path / "px.safetensors")
    back = dice("sample", prompts_file, "--model", "tiny-sd15", "--enhancer", pixart_enhancer, "-o", tmp_path / "s")
    assert back.code == 2 and "pixart family" in back.stderr
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


def test_transfer_between_pixart_models(dice, prompts_file, tmp_path, tiny_pixart_dir):
    from transformers import T5EncoderModel

    variant = variant_model(tiny_pixart_dir, tmp_path / "variant-pixart", T5EncoderModel, "text_encoder", 0.01)
    path = save_pixart_enhancer(random_enhancer(scale=0.05), tmp_path / "px.safetensors")
    result = dice("transfer", path, prompts_file, "--to", f"tiny-pixart,{variant}", "--steps", "2", "-o", tmp_path / "t",
                  "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["folders"]) == 4
    report = {e["target"]: e["sources"][0] for e in summary["compatibility"]}
    assert report["tiny-pixart"]["same_text_encoder"] and not report[str(variant)]["same_text_encoder"]


def test_pixart_recipes_and_single_files(dice, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from dicecli.refs import resolve_model
    from dicecli.settings import DistillConfig

    rows = {r["name"]: r for r in json.loads(dice("recipes", "--json").stdout)}
    assert {n for n, r in rows.items() if r["family"] == "pixart"} == {"pixart-alpha", "pixart-alpha-1024", "tiny-pixart"}
    ref = resolve_model("pixart-alpha")
    assert (ref.source, ref.family) == (HubSource("PixArt-alpha/PixArt-XL-2-512x512"), "pixart")
    assert resolve_model("pixart-alpha-1024").source.location == "PixArt-alpha/PixArt-XL-2-1024-MS"
    config = DistillConfig.resolve(ref.family, ref.recipe)
    data = config.data
    assert (config.loss, config.steps, config.batch_size, config.lr, config.guidance_scale, data) == \
        ("l2", 4000, 128, 2e-4, 5.0, "coco2017-train")
    recipe = tmp_path / "mine.toml"
    save_file({"x": torch.zeros(1)}, str(tmp_path / "PixArt-XL-2-512x512.safetensors"))
    recipe.write_text(f'name = "mine"\nfamily = "pixart"\n[source]\nfile = "{tmp_path / "PixArt-XL-2-512x512.safetensors"}"\n')
    refused = dice("encode", "-", "-o", tmp_path / "e.h5", "--model", recipe, input="a cat\n")
    assert refused.code == 2 and "diffusers folder" in refused.stderr and "Traceback" not in refused.stderr




def test_one_sampling_step_is_refused_in_one_sentence(dice, prompts_file, tmp_path, tiny_pixart_dir):
    """The diffusers pipeline fails on one step with an IndexError (its DMD branch); dicecli says why first."""
    result = dice("sample", prompts_file, "--model", "tiny-pixart", "--steps", "1", "-o", tmp_path / "s")
    assert result.code == 2 and "--steps 1 is too few for pixart models" in result.stderr and "--steps 2" in result.stderr
    assert not (tmp_path / "s").exists()
