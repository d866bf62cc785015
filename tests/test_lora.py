"""`--lora FILE[:SCALE]` (docs/commands.md, "LoRAs"): the pipeline's own load_lora_weights and set_adapters, so
`dice sample` equals the diffusers pipeline given the same LoRA; distill trains against the LoRA'd teacher;
safetensors only; recorded in every artifact it changes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

PROMPTS = ["a red cat", "a blue dog on a beach"]


def unet_lora(family: str, path):
    """A random LoRA on the tiny model's UNet attention (peft, not the identity), saved as diffusers saves one."""
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from dicecli.builtin import ensure_builtin
    from dicecli.families import FAMILIES

    cls = getattr(diffusers, FAMILIES[family].pipeline_class_name)
    pipe = cls.from_pretrained(ensure_builtin(f"tiny-{family}"), **FAMILIES[family].load_kwargs)
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    cls.save_lora_weights(path.parent, unet_lora_layers=get_peft_model_state_dict(pipe.unet), weight_name=path.name)
    return path


@pytest.fixture(scope="module")
def loras(tmp_path_factory, offline_home):
    folder = tmp_path_factory.mktemp("loras")
    return {family: unet_lora(family, folder / f"style-{family}.safetensors") for family in ("sd15", "sdxl")}


def pipeline_with(family: str, lora, scale: float):
    import diffusers

    from dicecli.builtin import ensure_builtin
    from dicecli.families import FAMILIES

    cls = FAMILIES[family]
    pipe = getattr(diffusers, cls.pipeline_class_name).from_pretrained(ensure_builtin(f"tiny-{family}"), **cls.load_kwargs)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[scale])
    return pipe


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_sample_with_a_lora_equals_the_pipeline(dice, family, loras, tmp_path):
    out, plain = tmp_path / "s", tmp_path / "plain"
    args = ("sample", "-", "--model", f"tiny-{family}", "--cfg", "3", "--steps", "4", "--seed", "5")
    result = dice(*args, "--lora", f"{loras[family]}:0.7", "-o", out, input="\n".join(PROMPTS))
    assert result.code == 0, result.stderr
    assert dice(*args, "-o", plain, input="\n".join(PROMPTS)).code == 0
    pipe = pipeline_with(family, loras[family], 0.7)
    expected = pipe(PROMPTS, guidance_scale=3.0, num_inference_steps=4, height=32, width=32,
                    generator=[torch.Generator().manual_seed(5 + i) for i in range(2)]).images
    for i, want in enumerate(expected):
        image = Image.open(out / f"{i:06d}.png")
        got = np.asarray(image.convert("RGB")).astype(int)
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1, (family, i)
        assert np.abs(got - np.asarray(Image.open(plain / f"{i:06d}.png").convert("RGB")).astype(int)).max() > 2
        assert f'Lora hashes: "style-{family}: ' in image.text["parameters"]
    (recorded,) = json.loads((out / "dice-sample.json").read_text())["loras"]
    assert (recorded["file"], recorded["scale"]) == (f"style-{family}.safetensors", 0.7)


@pytest.mark.slow
def test_distill_with_a_lora_trains_against_the_loras_teacher(dice, loras, tmp_path):
    from dicecli.enhancer import read_metadata
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model
    from helpers import write_imagefolder

    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog"])
    result = dice("distill", "--model", "tiny-sd15", "--lora", loras["sd15"], "--data", data, "--steps", "1",
                  "--batch-size", "2", "--no-validate", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    assert result.code == 0, result.stderr
    (recorded,) = read_metadata(tmp_path / "e.safetensors")["loras"]
    assert recorded["name"] == "style-sd15" and recorded["scale"] == 1.0
    # the teacher distill loads is the LoRA'd UNet: its prediction is not the plain model's
    with_lora = load_adapter(resolve_model("tiny-sd15", loras=(str(loras["sd15"]),)), torch.device("cpu"), torch.float32)
    plain = load_adapter(resolve_model("tiny-sd15"), torch.device("cpu"), torch.float32)
    with_lora.require("unet")
    plain.require("unet")
    cond = plain.encode(["a red cat"]).conditioning
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([500])
    with torch.no_grad():
        assert (with_lora.denoise(x, t, cond) - plain.denoise(x, t, cond)).abs().max() > 1e-3
    assert not any(p.requires_grad for p in with_lora.unet.parameters())  # LoRA weights frozen too


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("kind, needle", [
    ("missing", "does not exist; give a LoRA .safetensors file"),
    ("pickle", "is a pickle (.pt), which dicecli never loads"),
    ("scale", "the scale after the last ':' must be a number"),
    ("other-family", "does not fit tiny-sd15 (sd15)"),
    ("not-a-lora", "holds no LoRA weights"),
    ("pixart", "dicecli applies LoRAs to SD1.5 and SDXL models, not to tiny-pixart (pixart)"),
])
def test_loras_it_cannot_use_are_refused_and_nothing_written(dice, loras, kind, needle, tmp_path):
    from safetensors.torch import save_file

    model, spec = "tiny-sd15", str(loras["sd15"])
    if kind == "missing":
        spec = str(tmp_path / "gone.safetensors")
    elif kind == "pickle":
        (tmp_path / "x.pt").write_bytes(b"\x80\x04K\x01.")  # never unpickled
        spec = str(tmp_path / "x.pt")
    elif kind == "scale":
        spec += ":strong"
    elif kind == "other-family":
        spec = str(loras["sdxl"])
    elif kind == "not-a-lora":
        save_file({"weight": torch.zeros(2)}, str(tmp_path / "n.safetensors"))
        spec = str(tmp_path / "n.safetensors")
    else:
        model = "tiny-pixart"
    result = dice("sample", "-", "--model", model, "--lora", spec, "--steps", "2", "-o", tmp_path / "s", input="a cat")
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()


def test_attach_works_on_a_pipeline_with_the_users_lora_and_embedding(dice, loras, tmp_path):
    """The user's own pipeline, with a LoRA and a textual-inversion embedding loaded the diffusers way, then
    dicecli.attach: the same images as `dice sample` with --lora, --embedding and --enhancer."""
    from safetensors.torch import save_file

    import dicecli
    from helpers import random_enhancer_file

    torch.manual_seed(1)
    embedding = tmp_path / "mytok.safetensors"
    save_file({"emb_params": torch.randn(2, 32) * 0.5}, str(embedding))
    enhancer = random_enhancer_file(tmp_path / "e.safetensors")
    prompts = ["a photo of mytok", "mytok on a beach"]
    out = tmp_path / "s"
    result = dice("sample", "-", "--model", "tiny-sd15", "--enhancer", enhancer, "--lora", f"{loras['sd15']}:0.5",
                  "--embedding", embedding, "--steps", "4", "--seed", "2", "-o", out, input="\n".join(prompts))
    assert result.code == 0, result.stderr
    pipe = pipeline_with("sd15", loras["sd15"], 0.5)
    pipe.load_textual_inversion(str(embedding), token="mytok")
    dicecli.attach(pipe, enhancer)
    images = pipe(prompts, guidance_scale=1.0, num_inference_steps=4, height=32, width=32,
                  generator=[torch.Generator().manual_seed(2 + i) for i in range(2)]).images
    for i, want in enumerate(images):
        got = np.asarray(Image.open(out / f"{i:06d}.png").convert("RGB")).astype(int)
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1, i
