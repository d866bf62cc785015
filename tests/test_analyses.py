"""The paper's analyses (docs/analyses.md): partial enhancement, strength sweeps, `dice inspect`, `dice attention`,
`dice trigger`, and the page `dice eval` writes; every command on the tiny model of every family."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dicecli.families import FAMILIES
from helpers import family_enhancer_file

FAMILY_NAMES = sorted(FAMILIES)


@pytest.fixture(scope="module")
def family_enhancers(tmp_path_factory, offline_home):
    from dicecli.builtin import ensure_builtin

    folder = tmp_path_factory.mktemp("family-enhancers")
    for family in FAMILY_NAMES:
        ensure_builtin(f"tiny-{family}")
    return {family: family_enhancer_file(family, folder / f"{family}.safetensors") for family in FAMILY_NAMES}


def pixels(folder, name="000000.png"):
    return np.asarray(Image.open(folder / name))


# -- partial enhancement ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_partial_enhancement_replaces_only_its_part(family, family_enhancers):
    from dicecli.enhancer import read_enhancer
    from dicecli.families import load_adapter
    from dicecli.method import apply_enhancer
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model(f"tiny-{family}"), torch.device("cpu"), torch.float32)
    cond = adapter.encode(["a red cat", "a blue dog on a beach"]).conditioning
    net, _ = read_enhancer(family_enhancers[family])
    semantic = cond.semantic_positions()
    assert semantic.sum(1).tolist() == (cond.eos_index + 1).tolist()
    full = apply_enhancer(net, cond, adapter.null())
    for part, kept_from_c in (("semantic", ~semantic), ("padding", semantic)):
        out = apply_enhancer(net, cond, adapter.null(), part=part)
        assert torch.equal(out.prompt_embeds[kept_from_c], cond.prompt_embeds[kept_from_c])
        assert torch.equal(out.prompt_embeds[~kept_from_c], full.prompt_embeds[~kept_from_c])
    if cond.attention_mask is not None:  # PixArt: a semantic-only c' keeps the prompt's mask
        assert torch.equal(apply_enhancer(net, cond, adapter.null(), part="semantic").attention_mask, cond.attention_mask)


def test_enhance_part_is_recorded_and_an_enhanced_cache_samples_the_same(dice, prompts_file, enhancer_file, tmp_path):
    direct = tmp_path / "direct"
    assert dice("sample", prompts_file, "-e", enhancer_file, "--enhance-part", "semantic", "--steps", "3",
                "-o", direct).code == 0
    record = json.loads((direct / "metadata.jsonl").read_text().splitlines()[0])
    assert record["enhanced_part"] == "semantic"
    assert "DICE part: semantic" in Image.open(direct / "000000.png").text["parameters"]
    cache = tmp_path / "e.h5"
    assert dice("enhance", prompts_file, "-e", enhancer_file, "--enhance-part", "semantic", "-o", cache).code == 0
    via_cache = tmp_path / "via-cache"
    assert dice("sample", cache, "--steps", "3", "-o", via_cache).code == 0
    assert json.loads((via_cache / "metadata.jsonl").read_text().splitlines()[0])["enhanced_part"] == "semantic"
    for name in ("000000.png", "000001.png", "000002.png"):
        assert np.array_equal(pixels(direct, name), pixels(via_cache, name))
    full, plain = tmp_path / "full", tmp_path / "plain"
    assert dice("sample", prompts_file, "-e", enhancer_file, "--steps", "3", "-o", full).code == 0
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "3", "-o", plain).code == 0
    assert not np.array_equal(pixels(direct), pixels(full)) and not np.array_equal(pixels(direct), pixels(plain))


@pytest.mark.reliability("bad input")
def test_enhance_part_needs_an_enhancer_and_a_known_part(dice, prompts_file, enhancer_file, tmp_path):
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--enhance-part", "padding", "-o", tmp_path / "s")
    assert result.code == 2 and "--enhance-part needs --enhancer" in result.stderr
    result = dice("sample", prompts_file, "-e", enhancer_file, "--enhance-part", "middle", "-o", tmp_path / "s")
    assert result.code == 2 and "'middle'" in result.stderr
    assert not (tmp_path / "s").exists()


# -- strength sweeps -------------------------------------------------------------------------------------
def test_alpha_sweep_is_one_folder_per_strength_and_eval_reads_it_as_a_curve(dice, prompts_file, enhancer_file,
                                                                              tiny_clip_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = dice("sample", prompts_file, "-e", enhancer_file, "--alpha", "0,1,2", "--steps", "3", "-o", sweep, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["alphas"] == [0, 1, 2] and summary["generated"] == 9
    index = json.loads((sweep / "dice-sweep.json").read_text())
    assert index == {"sweep": "alpha", "values": [0.0, 1.0, 2.0], "folders": ["alpha-0", "alpha-1", "alpha-2"]}
    width = pixels(sweep / "alpha-0").shape[1]
    assert Image.open(sweep / "grid.png").size[0] == max(width, 128) + 3 * width  # the prompts' strip, 3 strengths
    # alpha 0 is the unguided model (c' = c) and alpha 1 a plain DICE run, image for image
    plain, single = tmp_path / "plain", tmp_path / "single"
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "3", "-o", plain).code == 0
    assert dice("sample", prompts_file, "-e", enhancer_file, "--alpha", "1", "--steps", "3", "-o", single).code == 0
    for name in ("000000.png", "000002.png"):
        assert np.array_equal(pixels(sweep / "alpha-0", name), pixels(plain, name))
        assert np.array_equal(pixels(sweep / "alpha-1", name), pixels(single, name))
    result = dice("eval", sweep, "--metrics", "clip", "--clip-model", tiny_clip_dir, "-o", tmp_path / "r", "--format", "json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["alpha"] for r in rows] == [0, 1, 2] and all(r["clip"] is not None for r in rows)
    assert json.loads((tmp_path / "r.json").read_text())["plots"] == {"alpha": str(tmp_path / "r-alpha.png")}
    assert Image.open(tmp_path / "r-alpha.png").size[0] > 200
    # a rerun finishes nothing new
    again = dice("sample", prompts_file, "-e", enhancer_file, "--alpha", "0,1,2", "--steps", "3", "-o", sweep, "--json")
    assert json.loads(again.stdout)["generated"] == 0


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("alpha, words", [("1,x", "--alpha '1,x' must be a number, or numbers separated by commas"),
                                          ("1,1", "--alpha lists 1 more than once"),
                                          ("0,inf", "--alpha inf must be a finite number")])
def test_bad_sweeps_are_refused(dice, prompts_file, enhancer_file, tmp_path, alpha, words):
    result = dice("sample", prompts_file, "-e", enhancer_file, "--alpha", alpha, "-o", tmp_path / "s")
    assert result.code == 2 and words in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.reliability("bad input")
def test_a_sweep_needs_an_enhancer_and_a_folder_that_is_not_a_sample_folder(dice, prompts_file, enhancer_file, tmp_path):
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--alpha", "0,1", "-o", tmp_path / "s")
    assert result.code == 2 and "needs --enhancer" in result.stderr
    folder = tmp_path / "plain"
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "2", "-o", folder).code == 0
    result = dice("sample", prompts_file, "-e", enhancer_file, "--alpha", "0,1", "--steps", "2", "-o", folder)
    assert result.code == 2 and "is a sample folder" in result.stderr


# -- dice inspect ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_inspect_reports_each_part_of_each_text_encoder(dice, family, family_enhancers, prompts_file, tmp_path):
    out = tmp_path / "inspect"
    result = dice("inspect", family_enhancers[family], prompts_file, "--model", f"tiny-{family}", "-o", out, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = {(s["encoder"], s["part"]): s for s in summary["summary"]}
    encoders = ["text_encoder", "text_encoder_2"] if family == "sdxl" else [""]
    assert sorted(rows) == sorted((e, p) for e in encoders for p in ("semantic", "padding"))
    assert summary["pooled_unchanged"] is (True if family == "sdxl" else None)
    assert rows[(encoders[0], "padding")]["reaches_denoiser"] is (family != "pixart")  # PixArt: the prompt's mask
    for s in rows.values():
        assert -1 <= s["cosine_mean"] < 0.9999 and s["change_mean"] > 0
    per_prompt = (out.parent / "inspect.csv").read_text().splitlines()
    assert len(per_prompt) == 1 + 3
    positions = (out.parent / "inspect-positions.csv").read_text().splitlines()
    tokens = 120 if family == "pixart" else 77
    assert len(positions) == 1 + tokens
    assert Image.open(out.parent / "inspect.png").size[0] > 500
    # the first prompt's semantic cosine, computed here from the model and the enhancer
    from dicecli.enhancer import read_enhancer
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model(f"tiny-{family}"), torch.device("cpu"), torch.float32)
    net, _ = read_enhancer(family_enhancers[family])
    cond = adapter.encode(["a red cat"]).conditioning
    null = adapter.null()
    enhanced = net(cond.prompt_embeds, null.prompt_embeds, 1.0, null.attention_mask)
    first = 1 if net.keep_first_token else 0
    end = int(cond.eos_index[0]) + 1
    columns = slice(0, 32)  # the first text encoder's columns (all of them but for SDXL)
    a, b = cond.prompt_embeds[0, first:end, columns].flatten(), enhanced[0, first:end, columns].flatten()
    expected = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    header = per_prompt[0].split(",")
    value = float(per_prompt[1].split(",")[header.index(f"{encoders[0]}.semantic_cosine" if encoders[0] else "semantic_cosine")])
    assert value == pytest.approx(expected, abs=1e-5)


def test_an_identity_enhancer_changes_nothing(dice, prompts_file, tmp_path):
    from dicecli.enhancer import Enhancer, save_enhancer

    identity = tmp_path / "identity.safetensors"
    save_enhancer(Enhancer(32), identity, family="sd15", tokens=77, trained_on="tiny-sd15")  # fc2 starts at zero
    result = dice("inspect", identity, prompts_file, "--json")
    assert result.code == 0, result.stderr
    for s in json.loads(result.stdout)["summary"]:
        assert s["cosine_mean"] == pytest.approx(1, abs=1e-6) and s["change_mean"] == 0


@pytest.mark.reliability("bad input")
def test_inspect_refuses_an_enhanced_cache_and_its_own_inputs(dice, prompts_file, enhancer_file, tmp_path):
    cache = tmp_path / "e.h5"
    assert dice("enhance", prompts_file, "-e", enhancer_file, "-o", cache).code == 0
    result = dice("inspect", enhancer_file, cache)
    assert result.code == 2 and "already enhanced" in result.stderr
    before = prompts_file.read_bytes()
    result = dice("inspect", enhancer_file, prompts_file, "-o", prompts_file.with_suffix(""))
    assert result.code == 0 and prompts_file.read_bytes() == before  # prompts.json etc. beside it, never prompts.txt
    result = dice("inspect", enhancer_file, prompts_file, "-o", tmp_path / "x" / "..")
    assert result.code == 2


# -- dice attention --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_attention_capture_leaves_the_pixels_and_reproduces_the_layer(family, family_enhancers):
    from dicecli.analysis.attention import AttentionCapture, CaptureProcessor, cross_attention_layers
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model
    from dicecli.sampling import generate
    from dicecli.settings import SampleConfig

    adapter = load_adapter(resolve_model(f"tiny-{family}"), torch.device("cpu"), torch.float32)
    cond = adapter.encode(["a red cat"]).conditioning
    how = SampleConfig(cfg=3.0, steps=3, scheduler="dpmsolver++", height=32, width=32)
    plain = np.asarray(generate(adapter, cond, adapter.unconditional(""), how, [5])[0])
    layers = cross_attention_layers(adapter.denoiser)
    with AttentionCapture(adapter.denoiser, layers, [1, 3], cfg=True) as capture:
        captured = np.asarray(generate(adapter, cond, adapter.unconditional(""), how, [5])[0])
    assert np.array_equal(plain, captured)
    assert {step for step, _ in capture.maps} == {1, 3} and {layer for _, layer in capture.maps} == set(layers)
    probabilities = capture.maps[(1, layers[0])]
    assert torch.allclose(probabilities.sum(-1), torch.ones(()), atol=1e-5)
    assert probabilities.shape[-1] == cond.prompt_embeds.shape[1] and probabilities.shape[0] == 1  # conditional row
    # the probabilities are those diffusers' classic attention processor computes, averaged over heads
    attn = dict(adapter.denoiser.named_modules())[layers[0]]
    x, context = torch.randn(2, 16, attn.to_q.in_features), torch.randn(2, 7, attn.to_k.in_features)
    with torch.no_grad():
        ours = CaptureProcessor(None, None, "").probabilities(attn, x, context, None)
        q, k = attn.head_to_batch_dim(attn.to_q(x)), attn.head_to_batch_dim(attn.to_k(context))
        theirs = attn.get_attention_scores(q, k, None).view(2, attn.heads, 16, 7).mean(1)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_attention_grid_for_every_family(dice, family, family_enhancers, tmp_path):
    out = tmp_path / "maps.png"
    result = dice("attention", family_enhancers[family], "a red cat", "--model", f"tiny-{family}", "--steps", "4",
                  "--at-steps", "2,4", "-o", out, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["words"] == ["red", "cat", "<end>", "<padding>"] and summary["steps"] == [2, 4]
    assert all(summary["positions"][w] for w in summary["words"])
    image = Image.open(out)
    assert image.size == (150 + 96 * 5, 34 + 96 * 4)  # label, image + 4 words; original and enhanced at 2 steps
    assert json.loads((tmp_path / "maps.png.json").read_text())["layers"] == summary["layers"]


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("argv, words", [
    (["--words", "dog"], "--words 'dog' is not a word of the prompt"),
    (["--at-steps", "9"], "--at-steps 9 must lie between 1 and --steps 4"),
    (["--at-steps", "two"], "--at-steps 'two' is not a whole number"),
    (["-o", "maps.jpg"], "must be a .png file"),
])
def test_attention_bad_input(dice, enhancer_file, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    result = dice("attention", enhancer_file, "a red cat", "--steps", "4", *argv)
    assert result.code == 2 and words in result.stderr
    assert not list(tmp_path.glob("*.png"))


# -- dice trigger ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_trigger_words_are_real_words_whose_encoding_gives_the_reported_distance(dice, family, family_enhancers,
                                                                              prompts_file, tmp_path):
    out = tmp_path / "trig"
    common = [family_enhancers[family], prompts_file, "--model", f"tiny-{family}", "--length", "2", "--top-k", "6"]
    start = dice("trigger", *common, "--iterations", "0", "--json")
    result = dice("trigger", *common, "--iterations", "3", "-o", out, "--json")
    assert result.code == 0 and start.code == 0, result.stderr
    found, initial = json.loads(result.stdout), json.loads(start.stdout)
    assert found["universal"] and len(found["suffixes"]) == 1 and found["distance"] <= initial["distance"]
    suffix = found["suffixes"][0]
    lines = (tmp_path / "trig.txt").read_text().splitlines()
    assert lines == [f"{p} {suffix}" for p in ("a red cat", "a blue dog on a beach", "a green house")]
    # the reported distance is what the plain words give, computed here through the family's own encoding
    from dicecli.enhancer import read_enhancer
    from dicecli.families import load_adapter
    from dicecli.method import apply_enhancer
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model(f"tiny-{family}"), torch.device("cpu"), torch.float32)
    net, _ = read_enhancer(family_enhancers[family])
    cond = adapter.encode(["a red cat", "a blue dog on a beach", "a green house"]).conditioning
    target = apply_enhancer(net, cond, adapter.null())
    with_words = adapter.encode(lines).conditioning

    def seen(c):
        return c.prompt_embeds * (c.attention_mask[..., None] if c.attention_mask is not None else 1)

    ratio = ((seen(with_words) - seen(target)) ** 2).sum((1, 2)) / ((seen(cond) - seen(target)) ** 2).sum((1, 2))
    assert found["distance"] == pytest.approx(ratio.mean().item(), rel=1e-4)


def test_trigger_per_prompt(dice, enhancer_file, prompts_file, tmp_path):
    result = dice("trigger", enhancer_file, prompts_file, "--length", "1", "--iterations", "1", "--top-k", "4",
                  "--per-prompt", "--json")
    assert result.code == 0, result.stderr
    assert not json.loads(result.stdout)["universal"] and len(json.loads(result.stdout)["suffixes"]) == 3


@pytest.mark.reliability("bad input")
def test_trigger_bad_input(dice, enhancer_file, prompts_file, tmp_path):
    result = dice("trigger", enhancer_file, prompts_file, "--length", "0")
    assert result.code == 2 and "--length and --top-k must be at least 1" in result.stderr
    result = dice("trigger", enhancer_file, prompts_file, "--length", "5000")
    assert result.code == 2 and "--length 5000 is more than the" in result.stderr


# -- the page ---------------------------------------------------------------------------------------------
@pytest.fixture
def report_page(dice, prompts_file, enhancer_file, tiny_clip_dir, tmp_path):
    """Unguided, CFG, DICE, padding-only DICE and a sweep, evaluated with an attention figure on the page."""
    folders = []
    for name, argv in (("unguided", ["--model", "tiny-sd15"]), ("cfg", ["--model", "tiny-sd15", "--cfg", "3"]),
                       ("dice", ["-e", enhancer_file]), ("padding", ["-e", enhancer_file, "--enhance-part", "padding"]),
                       ("sweep", ["-e", enhancer_file, "--alpha", "0.5,1.5"])):
        assert dice("sample", prompts_file, *argv, "--steps", "2", "-o", tmp_path / name).code == 0
        folders.append(tmp_path / name)
    figure = tmp_path / "maps.png"
    (tmp_path / "report").mkdir()
    assert dice("attention", enhancer_file, "a red cat", "--steps", "2", "-o", figure).code == 0
    result = dice("eval", *folders, "--metrics", "clip", "--clip-model", tiny_clip_dir, "--figure", figure,
                  "-o", tmp_path / "report" / "r")
    assert result.code == 0, result.stderr
    return tmp_path / "report" / "r.html"


def test_the_page_is_self_contained_with_thumbnails_and_links(report_page):
    import base64
    import io
    import re

    text = report_page.read_text()
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == 1 + 1 + 3 * 6  # the alpha curve, the maps, 3 prompts x 6 folders
    assert all(s.startswith("data:image/") for s in sources) and "<script" not in text
    thumb = Image.open(io.BytesIO(base64.b64decode(sources[-1].split(",", 1)[1])))
    assert max(thumb.size) <= 192
    links = re.findall(r'<a href="([^"]+)"', text)
    assert len(links) == 18 and all((report_page.parent / link).is_file() for link in links)
    assert "DICE α=1 (padding only)" in text and "DICE α=0.5" in text and "CFG w=3" in text


@pytest.mark.slow
def test_the_page_in_a_real_browser(report_page, tmp_path):
    """Debian's chromium (.ci/run installs it), driven by Playwright: no console errors, every image decodes,
    every link resolves, and the screenshot is not blank."""
    import shutil

    from playwright.sync_api import sync_playwright

    import os

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser_path and not os.environ.get("CI"):  # CI installs it (.ci/run): there a missing browser fails
        pytest.skip("chromium is not installed: apt-get install chromium (.ci/run does) to run the page in a browser")
    assert browser_path, "chromium is not installed: apt-get install chromium (.ci/run does)"
    messages = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        page.goto(report_page.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        links = page.evaluate("Array.from(document.links).map(a => a.href)")
        page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        for link in links[:3]:
            assert page.goto(link).ok
        browser.close()
    assert not [m for m in messages if m.startswith(("error", "pageerror"))], messages
    assert len(images) == 20 and all(done and width > 0 for done, width in images)
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=float)
    assert shot.std() > 10 and shot.shape[0] > 600


def test_the_maps_come_from_the_papers_resolution():
    """SD1.5 at 512 px: the decoder's 32 x 32 layers (of 16, 32 and 64); SDXL at 1024 px: its 64 x 64 ones (of 32, 64);
    a transformer: its one grid."""
    from dicecli.analysis.attention import AttentionCapture, resolution_maps

    def captured(latent: int, sides: dict[str, int]) -> AttentionCapture:
        capture = AttentionCapture(torch.nn.Identity(), list(sides), [1], cfg=False)
        capture.latent_size = (latent, latent)
        capture.maps = {(1, layer): torch.rand(1, side * side, 77) for layer, side in sides.items()}
        return capture

    sd15 = {"up_blocks.1.a.attn2": 16, "up_blocks.2.a.attn2": 32, "up_blocks.2.b.attn2": 32, "up_blocks.3.a.attn2": 64}
    maps, grid, used = resolution_maps(captured(64, sd15), list(sd15), 512, 512, unet=True)
    assert grid == (32, 32) and used == ["up_blocks.2.a.attn2", "up_blocks.2.b.attn2"] and maps[1].shape == (32, 32, 77)
    sdxl = {"up_blocks.0.a.attn2": 32, "up_blocks.1.a.attn2": 64}
    assert resolution_maps(captured(128, sdxl), list(sdxl), 1024, 1024, unet=True)[1] == (64, 64)
    pixart = {f"transformer_blocks.{i}.attn2": 64 for i in range(3)}
    _, grid, used = resolution_maps(captured(128, pixart), list(pixart), 1024, 1024, unet=False)
    assert grid == (64, 64) and len(used) == 3


@pytest.mark.reliability("bad input")
def test_the_analyses_refuse_several_processes(dice, enhancer_file, prompts_file, tmp_path, monkeypatch):
    import dicecli.distributed

    monkeypatch.setattr(dicecli.distributed, "launched_world", lambda: 2)
    monkeypatch.setattr(dicecli.distributed, "current", lambda cpu=False: dicecli.distributed.Group())
    for argv in (["inspect", enhancer_file, prompts_file, "-o", tmp_path / "i"],
                 ["trigger", enhancer_file, prompts_file, "-o", tmp_path / "t"],
                 ["attention", enhancer_file, "a red cat", "-o", tmp_path / "m.png"]):
        result = dice(*argv)
        assert result.code == 2 and "run as one process" in result.stderr, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["prompts.txt"]  # nothing written


# -- the PCA of enhanced embeddings (the paper's Appendix A.2) ------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pca_of_original_and_enhanced_embeddings_matches_numpys_svd(dice, family, family_enhancers, tmp_path):
    """The explained variance recomputed independently: the caches `dice encode` and `dice enhance` write, numpy's SVD."""
    import h5py

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} {s} by the {p}\n" for c in ("red", "blue", "green") for s in ("cat", "dog", "house")
                               for p in ("sea", "hill")))
    enhancer, model = family_enhancers[family], f"tiny-{family}"
    result = dice("inspect", enhancer, prompts, "--model", model, "--pca", "-o", tmp_path / "ins", "--json")
    assert result.code == 0, result.stderr
    pca = json.loads(result.stdout)["pca"]
    assert dice("encode", prompts, "--model", model, "-o", tmp_path / "plain.h5", "-q").code == 0
    assert dice("enhance", tmp_path / "plain.h5", "-e", enhancer, "-o", tmp_path / "enhanced.h5", "-q").code == 0
    for name, key in (("plain.h5", "original"), ("enhanced.h5", "enhanced")):
        with h5py.File(tmp_path / name) as f:
            points = f["prompt_embeds"][:].astype(np.float64).reshape(len(f["prompt_embeds"]), -1)
        shares = np.linalg.svd(points - points.mean(0), compute_uv=False) ** 2
        shares /= shares.sum()
        assert pca[key]["explained_top"] == pytest.approx(shares[:3].sum(), abs=2e-3), key
        assert pca[key]["components_to_share"] == int(np.searchsorted(np.cumsum(shares), 0.8) + 1), key
    assert pca["prompts"] == 18 and "scatter" not in pca
    written = json.loads((tmp_path / "ins.json").read_text())["pca"]
    assert len(written["scatter"]) == 36 and {k for *_, k in written["scatter"]} == {0, 1}
    assert Image.open(tmp_path / "ins-pca.png").size[0] > 600


@pytest.mark.reliability("bad input")
def test_pca_needs_three_prompts(dice, enhancer_file, tmp_path):
    prompts = tmp_path / "two.txt"
    prompts.write_text("a red cat\na blue dog\n")
    result = dice("inspect", enhancer_file, prompts, "--pca")
    assert result.code == 2 and "--pca needs at least 3 prompts" in result.stderr


# -- quality over training (the paper's Figure 16) -------------------------------------------------------------
def test_every_checkpoint_of_a_work_dir_is_sampled_and_eval_plots_it(dice, prompts_file, tiny_clip_dir, tmp_path):
    from helpers import write_imagefolder

    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog", "a green house", "a tall tree"])
    work = tmp_path / "run"
    trained = dice("distill", "--model", "tiny-sd15", "--data", data, "--steps", "3", "--batch-size", "2",
                   "--checkpoint-every", "1", "--keep-checkpoints", "0", "--no-validate", "--work-dir", work,
                   "-o", tmp_path / "final.safetensors", "-q")
    assert trained.code == 0, trained.stderr
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-0000001", "step-0000002", "step-0000003"]
    result = dice("sample", prompts_file, "--enhancer", work, "--steps", "2", "-o", tmp_path / "curve", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == [1, 2, 3] and summary["generated"] == 9
    # each folder is exactly `dice sample --enhancer CHECKPOINT`; the last checkpoint is the final enhancer
    single = tmp_path / "single"
    assert dice("sample", prompts_file, "-e", tmp_path / "final.safetensors", "--steps", "2", "-o", single, "-q").code == 0
    assert np.array_equal(pixels(tmp_path / "curve" / "step-0000003"), pixels(single))
    assert not np.array_equal(pixels(tmp_path / "curve" / "step-0000001"), pixels(single))
    report = dice("eval", tmp_path / "curve", "--metrics", "clip", "--clip-model", tiny_clip_dir, "-o", tmp_path / "r",
                  "--json")
    assert report.code == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["clip"] is not None for r in rows)
    assert json.loads((tmp_path / "r.json").read_text())["plots"] == {"step": str(tmp_path / "r-step.png")}
    assert "trained steps" in (tmp_path / "r.md").read_text()


@pytest.mark.reliability("bad input")
def test_a_work_dir_sweep_needs_an_output_and_a_checkpoint(dice, prompts_file, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    empty = dice("sample", prompts_file, "--enhancer", tmp_path / "run", "-o", tmp_path / "c")
    assert empty.code == 2 and "holds no complete checkpoint yet" in empty.stderr
    (tmp_path / "run" / "checkpoints" / "step-0000001").mkdir()
    (tmp_path / "run" / "checkpoints" / "step-0000001" / "trainer.json").write_text('{"step": 1}')
    no_output = dice("sample", prompts_file, "--enhancer", tmp_path / "run")
    assert no_output.code == 2 and "give -o" in no_output.stderr
