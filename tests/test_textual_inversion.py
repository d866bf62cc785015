"""`--embedding FILE` (docs/commands.md, "Textual-inversion embeddings"): the pipeline's own load_textual_inversion, so
`dice encode` and `dice sample` equal the diffusers pipeline given the same embedding; safetensors only."""

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

PROMPTS = ["a photo of mytok", "mytok on a beach"]


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    """A two-vector A1111 embedding for each CLIP family's tiny model (32-wide encoders), named mytok."""
    folder = tmp_path_factory.mktemp("ti")
    torch.manual_seed(0)
    (folder / "sd15").mkdir()
    (folder / "sdxl").mkdir()
    save_file({"emb_params": torch.randn(2, 32) * 0.5}, str(folder / "sd15" / "mytok.safetensors"))
    save_file({"clip_l": torch.randn(2, 32) * 0.5, "clip_g": torch.randn(2, 32) * 0.5}, str(folder / "sdxl" / "mytok.safetensors"))
    return {family: folder / family / "mytok.safetensors" for family in ("sd15", "sdxl")}


def pipeline_with(family: str, path):
    import diffusers
    from safetensors.torch import load_file

    from dicecli.builtin import ensure_builtin
    from dicecli.families import FAMILIES

    cls = FAMILIES[family]
    pipe = getattr(diffusers, cls.pipeline_class_name).from_pretrained(ensure_builtin(f"tiny-{family}"), **cls.load_kwargs)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    tensors = load_file(str(path))
    if family == "sdxl":  # the two encoders' vectors, as diffusers' docs load an SDXL embedding
        pipe.load_textual_inversion(tensors["clip_l"], token="mytok", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(tensors["clip_g"], token="mytok", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    else:
        pipe.load_textual_inversion(str(path), token="mytok")
    return pipe


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_encode_with_an_embedding_is_the_pipelines(dice, family, embeddings, tmp_path, offline_home):
    out = tmp_path / "c.h5"
    result = dice("encode", "-", "-o", out, "--model", f"tiny-{family}", "--embedding", embeddings[family],
                  input="\n".join(PROMPTS))
    assert result.code == 0, result.stderr
    pipe = pipeline_with(family, embeddings[family])
    with torch.no_grad():
        expected = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)[0]
    converted = pipe.maybe_convert_prompt(PROMPTS, pipe.tokenizer)  # mytok -> mytok mytok_1 (two vectors)
    ends = [len(pipe.tokenizer(text).input_ids) - 1 for text in converted]
    with h5py.File(out) as cache:
        np.testing.assert_allclose(cache["prompt_embeds"][:], expected.numpy(), atol=1e-6)
        assert cache["eos_index"][:].tolist() == ends
        recorded = json.loads(cache.attrs["embeddings"])
    assert [(e["token"], e["file"]) for e in recorded] == [("mytok", "mytok.safetensors")]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_sample_with_an_embedding_equals_the_pipeline(dice, family, embeddings, tmp_path, offline_home):
    out = tmp_path / "s"
    result = dice("sample", "-", "--model", f"tiny-{family}", "--embedding", embeddings[family], "--cfg", "3",
                  "--negative", "mytok, blurry", "--steps", "4", "--seed", "7", "-o", out, input="\n".join(PROMPTS))
    assert result.code == 0, result.stderr
    pipe = pipeline_with(family, embeddings[family])
    expected = pipe(PROMPTS, negative_prompt=["mytok, blurry"] * 2, guidance_scale=3.0, num_inference_steps=4,
                    height=32, width=32, generator=[torch.Generator().manual_seed(7 + i) for i in range(2)]).images
    for i, want in enumerate(expected):
        image = Image.open(out / f"{i:06d}.png")
        assert np.abs(np.asarray(image.convert("RGB")).astype(int) - np.asarray(want).astype(int)).max() <= 1, (family, i)
        assert "TI hashes: \"mytok: " in image.text["parameters"]


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("kind, needle", [
    ("missing", "does not exist; give a textual-inversion .safetensors file"),
    ("pickle", "is a pickle (.pt), which dicecli never loads"),
    ("other-family", "is made for SDXL (clip_l + clip_g) text encoders, not tiny-sd15's (sd15)"),
    ("wide", "has 768-wide vectors but tiny-sd15's text_encoder is 32 wide"),
    ("not-an-embedding", "is not a textual-inversion embedding"),
    ("pixart", "tiny-pixart (pixart) takes no textual-inversion embeddings"),
])
def test_embeddings_it_cannot_use_are_refused_and_nothing_written(dice, embeddings, kind, needle, tmp_path):
    model, path = "tiny-sd15", tmp_path / "x.safetensors"
    if kind == "missing":
        path = tmp_path / "gone.safetensors"
    elif kind == "pickle":
        path = tmp_path / "x.pt"
        path.write_bytes(b"\x80\x04K\x01.")  # never unpickled
    elif kind == "other-family":
        path = embeddings["sdxl"]
    elif kind == "wide":
        save_file({"emb_params": torch.zeros(1, 768)}, str(path))
    elif kind == "not-an-embedding":
        save_file({"a": torch.zeros(1), "b": torch.zeros(1)}, str(path))
    else:
        model, path = "tiny-pixart", embeddings["sd15"]
    result = dice("sample", "-", "--model", model, "--embedding", path, "--steps", "2", "-o", tmp_path / "s", input="a cat")
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()
