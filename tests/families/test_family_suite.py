"""Every registered family gets every check (docs/architecture.md, "Adding a family"): its tiny model encodes as its
diffusers pipeline does, `dice sample` equals the pipeline image for image with and without CFG, a short distill
cuts the held-out guidance error, an enhancer of another family is refused before weights load, and its enhancer
has the paper's parameter count. Registering a family in `dicecli.families.FAMILIES` runs all of it."""

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dicecli.families import FAMILIES
from helpers import short_distill_guidance_error

PROMPTS = ["a red cat", "a blue dog on a beach", "a green house"]
FAMILY_NAMES = sorted(FAMILIES)
# Short CPU distillation of each tiny model (helpers.short_distill_guidance_error): steps, and the largest
# DICE/unguided guidance-error ratio accepted on held-out prompts, about half the cut measured (sd15 0.503,
# sdxl 0.645, pixart 0.327); a family not listed gets the default.
DISTILL = {"sd15": (100, 0.75), "sdxl": (100, 0.82), "pixart": (60, 0.66)}
DEFAULT_DISTILL = (100, 0.9)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request, offline_home):
    from dicecli.builtin import ensure_builtin

    ensure_builtin(f"tiny-{request.param}")
    return request.param


def pipeline(family: str):
    """The family's own diffusers pipeline on its tiny model, with DPM-Solver++ as `dice sample` uses."""
    import diffusers

    from dicecli.builtin import ensure_builtin

    cls = FAMILIES[family]
    pipe = getattr(diffusers, cls.pipeline_class_name).from_pretrained(ensure_builtin(f"tiny-{family}"), **cls.load_kwargs)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_options(pipe) -> dict:
    """Pipeline arguments dicecli's behaviour corresponds to, where the pipeline has them: captions as given
    (no cleaning), and no aspect-ratio bins for a tiny sample size."""
    parameters = inspect.signature(pipe.__call__).parameters
    options = {}
    if "clean_caption" in parameters:
        options["clean_caption"] = False
    if "use_resolution_binning" in parameters:
        options["use_resolution_binning"] = False
    return options


def native_size(family: str) -> int:
    from dicecli.refs import resolve_model

    return FAMILIES[family].size_without_weights(resolve_model(f"tiny-{family}").source)


def test_encode_equals_what_the_pipeline_feeds_its_denoiser(dice, family, tmp_path):
    """`dice encode` gives the embeddings (and pooled embeddings, and masks) the family's pipeline computes with
    encode_prompt and passes to its denoiser."""
    import h5py

    out = tmp_path / "emb.h5"
    assert dice("encode", "-", "-o", out, "--model", f"tiny-{family}", input="\n".join(PROMPTS)).code == 0
    pipe = pipeline(family)
    seen = {}

    def capture(module, args, kwargs):
        seen.setdefault("prompt_embeds", kwargs["encoder_hidden_states"].detach().clone())
        if kwargs.get("added_cond_kwargs") and kwargs["added_cond_kwargs"].get("text_embeds") is not None:
            seen.setdefault("pooled_prompt_embeds", kwargs["added_cond_kwargs"]["text_embeds"].detach().clone())
        if kwargs.get("encoder_attention_mask") is not None:
            seen.setdefault("attention_mask", kwargs["encoder_attention_mask"].detach().clone())

    getattr(pipe, FAMILIES[family].denoiser_name).register_forward_pre_hook(capture, with_kwargs=True)
    size = native_size(family)
    pipe(PROMPTS, guidance_scale=1.0, num_inference_steps=2, height=size, width=size, output_type="latent",
         **call_options(pipe))
    assert "prompt_embeds" in seen
    with h5py.File(out) as cache:
        assert cache.attrs["family"] == family
        for name, expected in seen.items():
            np.testing.assert_allclose(cache[name][:], expected.float().numpy(), atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("cfg", ["5", "1"])
def test_sample_equals_the_pipeline(dice, family, tmp_path, cfg):
    out = tmp_path / "s"
    result = dice("sample", "-", "--model", f"tiny-{family}", "--cfg", cfg, "--steps", "5", "--seed", "10",
                  "--batch-size", "2", "-o", out, input="\n".join(PROMPTS))
    assert result.code == 0, result.stderr
    pipe = pipeline(family)
    size = native_size(family)
    expected = pipe(PROMPTS, guidance_scale=float(cfg), num_inference_steps=5, height=size, width=size,
                    generator=[torch.Generator().manual_seed(10 + i) for i in range(3)], **call_options(pipe)).images
    for i, want in enumerate(expected):
        got = np.asarray(Image.open(out / f"{i:06d}.png").convert("RGB")).astype(int)
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1, (family, cfg, i)


@pytest.mark.slow
def test_short_distill_cuts_the_held_out_guidance_error(dice, family, tmp_path):
    steps, ratio = DISTILL.get(family, DEFAULT_DISTILL)
    meta, plain, enhanced = short_distill_guidance_error(dice, tmp_path, f"tiny-{family}", steps=steps)
    cls = FAMILIES[family]
    assert (meta["family"], meta["loss"]) == (family, cls.defaults["distill"]["loss"])
    assert enhanced <= ratio * plain, (family, plain, enhanced)  # on prompts the run never saw
    log = [json.loads(line)["loss"] for line in (tmp_path / "w" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == steps and np.mean(log[-20:]) < np.mean(log[:5]), log  # and the training loss went down


@pytest.mark.reliability("bad input")
def test_an_enhancer_of_another_family_is_refused_before_weights_load(dice, family, prompts_file, tmp_path, monkeypatch):
    from dicecli.enhancer import Enhancer, save_enhancer
    from dicecli.loading import Components

    other = next(f for f in FAMILY_NAMES if f != family)
    enhancer = tmp_path / f"{other}.safetensors"
    save_enhancer(Enhancer(32), enhancer, family=other, tokens=77, trained_on=f"tiny-{other}")
    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"weights loaded: {wanted}"))
    for args in (("sample", prompts_file, "--enhancer", enhancer, "--model", f"tiny-{family}", "-o", tmp_path / "s"),
                 ("transfer", enhancer, prompts_file, "--to", f"tiny-{family}", "-o", tmp_path / "t")):
        result = dice(*args)
        assert result.code == 2, result.stderr
        assert f"trained for the {other} family and cannot be used with tiny-{family} ({family})" in result.stderr


def test_enhancer_parameter_formula(family):
    """1025 D + 1,049,600 parameters for embeddings of width D (inner width 512, 8 heads): the paper's sizes."""
    from dicecli.enhancer import Enhancer, parameter_count
    from dicecli.refs import resolve_model

    text = FAMILIES[family].text_from_configs(resolve_model(f"tiny-{family}").source)
    enhancer = Enhancer.for_text(text)
    assert parameter_count(enhancer) == 1025 * text.width + 1_049_600
    assert enhancer.keep_first_token == text.keep_first_token
