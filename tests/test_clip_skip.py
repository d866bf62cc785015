"""`--clip-skip N` (A1111's Clip skip; docs/commands.md, "Clip skip"): the pipeline's own `encode_prompt(clip_skip=N-1)`
for the CLIP families, recorded in caches, enhancers and sample folders, and refused where it cannot apply."""

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import random_enhancer_file

PROMPTS = ["a red cat", "a blue dog on a beach"]
CLIP_FAMILIES = ["sd15", "sdxl"]


def pipeline(family: str):
    import diffusers

    from dicecli.builtin import ensure_builtin
    from dicecli.families import FAMILIES

    cls = FAMILIES[family]
    pipe = getattr(diffusers, cls.pipeline_class_name).from_pretrained(ensure_builtin(f"tiny-{family}"), **cls.load_kwargs)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    if family == "sd15":  # diffusers 0.42.1 + transformers 5 (the same shim dicecli applies; see its docstring)
        from dicecli.families.sd15 import expose_text_model

        expose_text_model(pipe.text_encoder)
    return pipe


@pytest.mark.parametrize("family", CLIP_FAMILIES)
def test_encode_with_clip_skip_is_the_pipelines_encode_prompt(dice, family, tmp_path, offline_home):
    skipped, plain = tmp_path / "skip2.h5", tmp_path / "plain.h5"
    assert dice("encode", "-", "-o", skipped, "--model", f"tiny-{family}", "--clip-skip", "2", input="\n".join(PROMPTS)).code == 0
    assert dice("encode", "-", "-o", plain, "--model", f"tiny-{family}", input="\n".join(PROMPTS)).code == 0
    pipe = pipeline(family)
    with torch.no_grad():
        expected = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False,
                                      clip_skip=1)[0]
    with h5py.File(skipped) as a, h5py.File(plain) as b:
        assert a.attrs["clip_skip"] == 2 and "clip_skip" not in b.attrs  # 1, the default, is not written
        np.testing.assert_allclose(a["prompt_embeds"][:], expected.numpy(), atol=1e-6)
        assert np.abs(a["prompt_embeds"][:] - b["prompt_embeds"][:]).max() > 1e-2  # another embedding space


@pytest.mark.parametrize("family", CLIP_FAMILIES)
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_sample_with_clip_skip_equals_the_pipeline(dice, family, cfg, tmp_path, offline_home):
    """Unguided: the pipeline called with clip_skip. Under CFG the negative branch is encoded with the clip skip too, as
    A1111 and ComfyUI do; diffusers' encode_prompt applies clip_skip to the prompt only, so the pipeline is given
    both embeddings from its own encode_prompt(clip_skip=...) here."""
    out = tmp_path / "s"
    result = dice("sample", "-", "--model", f"tiny-{family}", "--clip-skip", "2", "--cfg", str(cfg), "--steps", "4",
                  "--seed", "3", "-o", out, input="\n".join(PROMPTS))
    assert result.code == 0, result.stderr
    pipe = pipeline(family)
    generators = [torch.Generator().manual_seed(3 + i) for i in range(2)]
    call = dict(guidance_scale=cfg, num_inference_steps=4, height=32, width=32, generator=generators)
    if cfg == 1.0:
        expected = pipe(PROMPTS, clip_skip=1, **call).images
    else:
        with torch.no_grad():
            encoded = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False,
                                         clip_skip=1)
            negative = pipe.encode_prompt([""] * 2, device="cpu", num_images_per_prompt=1,
                                          do_classifier_free_guidance=False, clip_skip=1)
        if family == "sdxl":  # no negative prompt: SDXL's pipeline uses zeros (force_zeros_for_empty_prompt)
            embeds = dict(prompt_embeds=encoded[0], pooled_prompt_embeds=encoded[2],
                          negative_prompt_embeds=torch.zeros_like(negative[0]),
                          negative_pooled_prompt_embeds=torch.zeros_like(negative[2]))
        else:
            embeds = dict(prompt_embeds=encoded[0], negative_prompt_embeds=negative[0])
        expected = pipe(**embeds, **call).images
    for i, want in enumerate(expected):
        image = Image.open(out / f"{i:06d}.png")
        got = np.asarray(image.convert("RGB")).astype(int)
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1, (family, i)
        assert "Clip skip: 2" in image.text["parameters"] and image.text["clip_skip"] == "2"
    assert json.loads((out / "dice-sample.json").read_text())["clip_skip"] == 2


def test_a_recipe_sets_clip_skip_and_the_option_overrides_it(dice, tiny_sd15_dir, tmp_path):
    recipe = tmp_path / "anime.toml"
    recipe.write_text(f'family = "sd15"\n[source]\npath = "{tiny_sd15_dir}"\nclip_skip = 2\n')
    for args, want in (([], 2), (["--clip-skip", "1"], None)):
        out = tmp_path / f"c{want}.h5"
        assert dice("encode", "-", "-o", out, "--model", recipe, *args, input="a red cat").code == 0
        with h5py.File(out) as cache:
            assert cache.attrs.get("clip_skip") == want


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("model, value, needle", [
    ("tiny-sd15", "0", "--clip-skip 0 must be a whole number of at least 1"),
    ("tiny-sd15", "3", "--clip-skip 3 is beyond tiny-sd15's 2 text-encoder layers; use 1 to 2"),
    ("tiny-pixart", "2", "tiny-pixart (pixart) has no CLIP text encoder to skip layers of; drop --clip-skip"),
    ("tiny-sd15", "two", "--clip-skip"),
])
def test_clip_skip_it_cannot_use_is_refused_and_nothing_written(dice, model, value, needle, tmp_path):
    result = dice("encode", "-", "-o", tmp_path / "c.h5", "--model", model, "--clip-skip", value, input="a red cat")
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.reliability("bad input")
def test_a_cache_of_another_clip_skip_is_refused_an_enhancer_of_another_is_noted(dice, tmp_path):
    cache = tmp_path / "skip2.h5"
    assert dice("encode", "-", "-o", cache, "--model", "tiny-sd15", "--clip-skip", "2", input="a red cat").code == 0
    result = dice("sample", cache, "--steps", "2", "-o", tmp_path / "s")  # the cache's model at clip skip 1
    assert result.code == 2 and "holds embeddings made with clip skip 2, but tiny-sd15 is used with clip skip 1" in result.stderr
    assert not (tmp_path / "s").exists()
    appended = dice("encode", "-", "-o", cache, "--model", "tiny-sd15", input="a blue dog")
    assert appended.code == 2 and "append with --clip-skip 2" in appended.stderr
    enhancer = random_enhancer_file(tmp_path / "e.safetensors")  # trained at clip skip 1
    result = dice("sample", "-", "--enhancer", enhancer, "--clip-skip", "2", "--steps", "2", "-o", tmp_path / "d",
                  input="a red cat")
    assert result.code == 0 and result.stderr.count("was trained with clip skip 1") == 1, result.stderr


@pytest.mark.slow
def test_distill_with_clip_skip_records_it_and_resume_keeps_it(dice, tmp_path):
    from dicecli.enhancer import read_metadata
    from helpers import write_imagefolder

    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog"])
    args = ["distill", "--model", "tiny-sd15", "--data", data, "--batch-size", "2", "--no-validate",
            "--checkpoint-every", "1", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors"]
    assert dice(*args, "--steps", "1", "--clip-skip", "2").code == 0
    assert read_metadata(tmp_path / "e.safetensors")["clip_skip"] == 2
    refused = dice(*args, "--steps", "2", "--resume")
    assert refused.code == 2 and "holds a run with clip skip 2, not 1" in refused.stderr
