"""The Python API (docs/python.md): its public names, the diffusers integration (same images as `dice sample`,
pixel for pixel, for every family; detach restores the pipeline), caches, and the page's own examples."""

import functools
import inspect
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dicecli
from dicecli.families import FAMILIES
from helpers import family_enhancer_file

FAMILY_NAMES = sorted(FAMILIES)
# The public surface, listed here once more on purpose: a name that disappears from dicecli.__all__ breaks users.
PUBLIC = ["Attachment", "CachedEmbeddings", "DamagedError", "DiceError", "IncompatibleError", "LoadedEnhancer",
          "UsageError", "__version__", "attach", "detach", "enhanced_embeddings", "load_enhancer", "load_pipeline",
          "read_cache", "set_scheduler", "write_cache"]
PROMPTS = ["a red cat", "a blue dog on a beach", "a green house"]
ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_listed_typed_and_documented():
    assert set(PUBLIC) <= set(dicecli.__all__), set(PUBLIC) - set(dicecli.__all__)
    assert sorted(dicecli.__all__) == sorted(dicecli.api.__all__ + ["__version__"])
    assert (ROOT / "dicecli" / "py.typed").is_file()
    for name in dicecli.__all__:
        value = getattr(dicecli, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), f"{name} has no docstring"
        if inspect.isfunction(value):
            from diffusers import DiffusionPipeline

            hints = typing.get_type_hints(value, vars(dicecli.api) | {"torch": torch, "DiffusionPipeline": DiffusionPipeline})
            parameters = list(inspect.signature(value).parameters)
            assert "return" in hints and all(p in hints for p in parameters), f"{name} is not fully annotated"


@pytest.fixture(scope="module")
def enhancers(tmp_path_factory, offline_home):
    folder = tmp_path_factory.mktemp("api-enhancers")
    return {family: family_enhancer_file(family, folder / f"{family}.safetensors") for family in FAMILY_NAMES}


def pipeline(family: str, kind: str = ""):
    pipe = dicecli.load_pipeline(f"tiny-{family}", device="cpu")
    if kind == "img2img":
        import diffusers

        name = {"sd15": "StableDiffusionImg2ImgPipeline", "sdxl": "StableDiffusionXLImg2ImgPipeline"}[family]
        pipe = getattr(diffusers, name)(**pipe.components)
    dicecli.set_scheduler(pipe, "dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def options(pipe, cfg: float = 1.0) -> dict:
    """The call `dice sample --steps 3 --seed 0` makes: one generator per image, seeds 0, 1, 2."""
    extra = {}
    parameters = inspect.signature(pipe.__call__).parameters
    if "clean_caption" in parameters:
        extra["clean_caption"] = False  # dicecli passes PixArt-α prompts as given
    if "use_resolution_binning" in parameters:
        extra["use_resolution_binning"] = False  # no bins for the tiny sample size
    return dict(guidance_scale=cfg, num_inference_steps=3, generator=[torch.Generator().manual_seed(i) for i in range(3)],
                **extra)


def cli_images(dice, enhancer, tmp_path, family, *extra) -> list[np.ndarray]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / ("cli" + "-".join(extra))
    assert dice("sample", prompts, "--model", f"tiny-{family}", "-e", enhancer, "--steps", "3", "-o", out, *extra).code == 0
    return [np.asarray(Image.open(out / f"{i:06d}.png")) for i in range(3)]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_an_attached_pipeline_makes_the_cli_images(dice, family, enhancers, tmp_path):
    pipe = pipeline(family)
    attachment = dicecli.attach(pipe, enhancers[family])
    dice_images = [np.asarray(i) for i in pipe(PROMPTS, **options(pipe)).images]
    assert all(np.array_equal(a, b) for a, b in zip(dice_images, cli_images(dice, enhancers[family], tmp_path, family)))
    both = [np.asarray(i) for i in pipe(PROMPTS, **options(pipe, 3.0)).images]  # DICE + CFG
    cli_both = cli_images(dice, enhancers[family], tmp_path, family, "--cfg", "3")
    assert all(np.array_equal(a, b) for a, b in zip(both, cli_both))
    attachment.alpha = 0.0  # c' = c: the unguided model
    attachment.detach()
    plain = [np.asarray(i) for i in pipe(PROMPTS, **options(pipe)).images]
    assert not np.array_equal(plain[0], dice_images[0])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_enhanced_embeddings_are_the_pipelines_call_arguments(family, enhancers):
    pipe = pipeline(family)
    kwargs = dicecli.enhanced_embeddings(pipe, enhancers[family], PROMPTS)
    expected = {"sd15": {"prompt_embeds"}, "sdxl": {"prompt_embeds", "pooled_prompt_embeds"},
                "pixart": {"prompt_embeds", "prompt_attention_mask", "negative_prompt", "use_resolution_binning"}}[family]
    assert set(kwargs) == expected
    direct = [np.asarray(i) for i in pipe(**{**options(pipe), **kwargs}).images]
    dicecli.attach(pipe, enhancers[family])
    attached = [np.asarray(i) for i in pipe(PROMPTS, **options(pipe)).images]
    dicecli.detach(pipe)
    assert all(np.array_equal(a, b) for a, b in zip(direct, attached))
    with_cfg = dicecli.enhanced_embeddings(pipe, enhancers[family], PROMPTS, guidance_scale=3.0, negative_prompt="blurry")
    assert "negative_prompt_embeds" in with_cfg
    assert pipe(**{**options(pipe, 3.0), **with_cfg}).images[0].size == (32, 32)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_img2img_pipelines_take_an_enhancer(family, enhancers):
    pipe = pipeline(family, "img2img")
    image = Image.new("RGB", (32, 32), (200, 40, 40))
    call = dict(image=image, strength=0.8, **options(pipe))
    plain = np.asarray(pipe(PROMPTS[0], **{**call, "generator": torch.Generator().manual_seed(0)}).images[0])
    dicecli.attach(pipe, enhancers[family])
    enhanced = np.asarray(pipe(PROMPTS[0], **{**call, "generator": torch.Generator().manual_seed(0)}).images[0])
    dicecli.detach(pipe)
    kwargs = dicecli.enhanced_embeddings(pipe, enhancers[family], PROMPTS[0])
    direct = np.asarray(pipe(**kwargs, **{**call, "generator": torch.Generator().manual_seed(0)}).images[0])
    assert np.array_equal(enhanced, direct) and not np.array_equal(plain, enhanced)


def test_detach_restores_the_pipeline_exactly(enhancers):
    pipe = pipeline("sd15")
    before, method = dict(vars(pipe)), pipe.encode_prompt
    attachment = dicecli.attach(pipe, enhancers["sd15"], alpha=0.5, part="padding")
    assert pipe.encode_prompt is not method and inspect.signature(pipe.encode_prompt) == inspect.signature(method)
    dicecli.detach(pipe)
    assert vars(pipe) == before and pipe.encode_prompt == method and "encode_prompt" not in vars(pipe)
    assert attachment.alpha == 0.5 and attachment.part == "padding"


def test_partial_enhancement_and_strength_through_attach(enhancers):
    from dicecli.enhancer import read_enhancer
    from dicecli.families import adapter_for_pipeline
    from dicecli.method import apply_enhancer

    pipe = pipeline("sd15")
    adapter = adapter_for_pipeline(pipe)
    cond = adapter.encode(PROMPTS).conditioning
    net, _ = read_enhancer(enhancers["sd15"])
    dicecli.attach(pipe, enhancers["sd15"], alpha=0.7, part="semantic")
    embeds, _ = pipe.encode_prompt(PROMPTS, "cpu", 2, False)
    dicecli.detach(pipe)
    expected = apply_enhancer(net, cond, adapter.null(), 0.7, "semantic").prompt_embeds
    assert torch.equal(embeds, expected.repeat_interleave(2, dim=0))


@pytest.mark.reliability("bad input")
def test_attach_refuses_in_one_sentence(enhancers, tmp_path):
    pipe = pipeline("sd15")
    dicecli.attach(pipe, enhancers["sd15"])
    with pytest.raises(dicecli.UsageError, match="already has enhancer sd15.safetensors attached; detach it first"):
        dicecli.attach(pipe, enhancers["sd15"])
    dicecli.detach(pipe)
    with pytest.raises(dicecli.UsageError, match="has no enhancer attached"):
        dicecli.detach(pipe)
    with pytest.raises(dicecli.IncompatibleError, match="trained for the sdxl family and cannot be used with"):
        dicecli.attach(pipe, enhancers["sdxl"])
    from diffusers import DDPMPipeline

    with pytest.raises(dicecli.UsageError, match="DDPMPipeline is not a pipeline dicecli can attach an enhancer to"):
        dicecli.attach(DDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler), enhancers["sd15"])
    with pytest.raises(dicecli.UsageError, match="does not exist"):
        dicecli.load_enhancer(tmp_path / "missing.safetensors", pipe)
    with pytest.raises(dicecli.UsageError, match="alpha nan must be a finite number"):
        dicecli.attach(pipe, enhancers["sd15"], alpha=float("nan"))
    assert "encode_prompt" not in vars(pipe)  # nothing was left attached by a refusal


def test_an_enhancer_from_another_model_of_the_family_warns(enhancers, tmp_path):
    from dicecli.enhancer import Enhancer, save_enhancer

    other = tmp_path / "other.safetensors"
    save_enhancer(Enhancer(32), other, family="sd15", tokens=77, trained_on="dreamshaper",
                  text_encoder_fingerprint="0123456789abcdef")
    with pytest.warns(UserWarning, match="come from dreamshaper, whose text encoder differs"):
        loaded = dicecli.load_enhancer(other, pipeline("sd15"))
    assert loaded.notes and loaded.family == "sd15"


def test_caches_written_and_read_as_the_commands_do(dice, enhancers, tmp_path):
    plain = dicecli.write_cache(tmp_path / "c.h5", PROMPTS, "tiny-sd15", device="cpu")
    assert plain.prompts == PROMPTS and not plain.enhanced and plain.conditioning.prompt_embeds.shape == (3, 77, 32)
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    assert dice("encode", prompts, "--model", "tiny-sd15", "-o", tmp_path / "cli.h5").code == 0
    assert torch.equal(dicecli.read_cache(tmp_path / "cli.h5").conditioning.prompt_embeds, plain.conditioning.prompt_embeds)
    enhanced = dicecli.write_cache(tmp_path / "e.h5", PROMPTS, "tiny-sd15", enhancer=enhancers["sd15"], device="cpu")
    assert enhanced.enhanced and enhanced.attributes["alpha"] == 1.0
    pipe = pipeline("sd15")
    from_cache = [np.asarray(i) for i in pipe(**enhanced.pipeline_kwargs(pipe), **options(pipe)).images]
    assert all(np.array_equal(a, b) for a, b in zip(from_cache, cli_images(dice, enhancers["sd15"], tmp_path, "sd15")))
    with pytest.raises(dicecli.IncompatibleError, match="holds sd15 embeddings"):
        enhanced.pipeline_kwargs(pipeline("sdxl"))
    with pytest.raises(dicecli.UsageError, match="is not an embedding cache"):
        dicecli.read_cache(prompts)


def test_the_python_page_runs(enhancers, tmp_path, monkeypatch):
    """Every ```python block of docs/python.md, in order, in one namespace, in a folder holding the enhancer
    file the page names (a random-weight tiny-sd15 one): the page cannot rot."""
    page = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    Path("my-enhancer.safetensors").write_bytes(enhancers["sd15"].read_bytes())
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/python.md block {number}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - say which block broke
            raise AssertionError(f"docs/python.md block {number} failed: {error!r}\n{block}") from error
    assert Path("dice-cat.png").is_file()


# -- nothing captured at attach time (docs/python.md, "Offloading, dtypes and copies") ---------------------------
def test_an_attached_pipeline_follows_a_later_dtype_move(enhancers):
    """attach on bf16, then .to(float32): the images of a float32 pipeline with the enhancer attached."""
    moved = dicecli.load_pipeline("tiny-sd15", device="cpu", dtype="bf16")
    dicecli.attach(moved, enhancers["sd15"])
    moved.to(torch.float32)
    reference = dicecli.load_pipeline("tiny-sd15", device="cpu", dtype="bf16").to(torch.float32)  # the same weights
    dicecli.attach(reference, enhancers["sd15"])  # attached after the move
    for pipe in (moved, reference):
        dicecli.set_scheduler(pipe, "dpmsolver++")
        pipe.set_progress_bar_config(disable=True)
    a, b = (p.encode_prompt(PROMPTS, "cpu", 1, False)[0] for p in (moved, reference))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    a, b = (np.asarray(p(PROMPTS, **options(p)).images[0]) for p in (moved, reference))
    assert np.array_equal(a, b)


def test_a_swapped_text_encoder_encodes_the_negative_too(enhancers, other_sd15_dir):
    from transformers import CLIPTextModel

    swapped = pipeline("sd15")
    dicecli.attach(swapped, enhancers["sd15"])
    swapped.text_encoder = CLIPTextModel.from_pretrained(other_sd15_dir / "text_encoder")
    fresh = pipeline("sd15")
    fresh.text_encoder = CLIPTextModel.from_pretrained(other_sd15_dir / "text_encoder")
    dicecli.attach(fresh, enhancers["sd15"])
    a, b = (p.encode_prompt(PROMPTS, "cpu", 1, False)[0] for p in (swapped, fresh))
    assert torch.equal(a, b)
    plain = pipeline("sd15")
    dicecli.attach(plain, enhancers["sd15"])
    assert not torch.equal(plain.encode_prompt(PROMPTS, "cpu", 1, False)[0], a)  # the swap matters


def test_a_deep_copy_of_an_attached_pipeline_is_its_own(enhancers):
    import copy

    original = pipeline("sd15")
    dicecli.attach(original, enhancers["sd15"])
    twin = copy.deepcopy(original).to(torch.bfloat16)
    embeds = twin.encode_prompt(PROMPTS, "cpu", 1, False)[0]
    assert embeds.dtype == torch.bfloat16 and twin.encode_prompt.__self__ is twin
    assert original.encode_prompt(PROMPTS, "cpu", 1, False)[0].dtype == torch.float32


def test_the_negative_goes_through_the_pipelines_own_encode_prompt(enhancers, monkeypatch):
    """With the call's settings (here clip_skip), encoded once for the enhancer: E(c, c_neg) by hand."""
    from diffusers import StableDiffusionPipeline

    from dicecli.families import Conditioning
    from dicecli.method import enhance_conditioning

    from dicecli.families.sd15 import expose_text_model

    pipe = pipeline("sd15")
    expose_text_model(pipe.text_encoder)  # diffusers 0.42.1's clip_skip on transformers 5 needs it, dicecli or not
    calls = []
    own = StableDiffusionPipeline.encode_prompt
    @functools.wraps(own)
    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("prompt", args[0] if args else None))
        return own(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "encode_prompt", spy)
    attachment = dicecli.attach(pipe, enhancers["sd15"])
    got = pipe.encode_prompt(PROMPTS, "cpu", 1, False, negative_prompt="blurry", clip_skip=1)[0]
    assert calls == [PROMPTS, ["blurry"]]
    plain = own(pipe, PROMPTS, "cpu", 1, False, clip_skip=1)[0]
    negative = own(pipe, ["blurry"], "cpu", 1, False, clip_skip=1)[0]
    eos = pipe.tokenizer(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").attention_mask.sum(1) - 1
    expected = enhance_conditioning(attachment.enhancer.network, Conditioning(plain, eos),
                                    Conditioning(negative, torch.zeros(1, dtype=torch.long)), 1.0).prompt_embeds
    torch.testing.assert_close(got, expected)


@pytest.mark.reliability("bad input")
def test_the_api_checks_what_the_cli_checks_at_call_time(enhancers, tmp_path):
    pipe = pipeline("sd15")
    with pytest.raises(dicecli.UsageError, match="An enhancer is a .safetensors file's path.*not a Linear"):
        dicecli.attach(pipe, torch.nn.Linear(2, 2))
    attachment = dicecli.attach(pipe, enhancers["sd15"])
    attachment.alpha = 1e30
    with pytest.raises(dicecli.UsageError, match="alpha"):
        pipe(PROMPTS[:1], **{**options(pipe), "generator": None})
    attachment.alpha = 1.0
    enhanced = dicecli.enhanced_embeddings(pipeline("sd15"), enhancers["sd15"], PROMPTS)
    with pytest.raises(dicecli.UsageError, match="already enhanced"):
        pipe(**enhanced, **options(pipe))
    cache = dicecli.write_cache(tmp_path / "e.h5", PROMPTS, "tiny-sd15", enhancer=enhancers["sd15"], device="cpu")
    with pytest.raises(dicecli.UsageError, match="already enhanced"):
        pipe(**cache.pipeline_kwargs(pipe), **options(pipe))
    attachment.detach()
    assert len(pipe(**cache.pipeline_kwargs(pipe), **options(pipe)).images) == 3  # without the enhancer: fine
