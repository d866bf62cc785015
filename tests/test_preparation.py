"""The preparation layer (dicecli/preparation.py): sample, enhance and transfer resolve inputs, models, enhancers
and negatives the same way, and say the same sentence about the same mismatch."""

import subprocess
import sys

import pytest
import torch

from dicecli.enhancer import Enhancer, save_enhancer
from helpers import random_enhancer_file


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def note_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("note: ")]


def three_commands(dice, tmp_path, source, enhancer, model, *extra):
    """The same inputs through `dice sample`, `dice enhance` and `dice transfer`."""
    return [
        dice("sample", source, "--enhancer", enhancer, "--model", model, "--steps", "1", "-o", tmp_path / "s", *extra),
        dice("enhance", source, "--enhancer", enhancer, "--model", model, "-o", tmp_path / "e.h5", *extra),
        dice("transfer", enhancer, source, "--to", model, "--steps", "1", "-o", tmp_path / "t", *extra),
    ]


@pytest.mark.reliability("bad input")
def test_an_enhancer_of_another_family_gets_one_sentence_in_every_command(dice, prompts_file, tmp_path):
    sdxl = tmp_path / "sdxl-enh.safetensors"
    save_enhancer(Enhancer(64), sdxl, family="sdxl", tokens=77, trained_on="tiny-sdxl")
    results = three_commands(dice, tmp_path, prompts_file, sdxl, "tiny-sd15")
    assert all(r.code == 2 for r in results), [r.stderr for r in results]
    lines = {error_line(r) for r in results}
    assert lines == {f"error: Enhancer {sdxl} was trained for the sdxl family and cannot be used with tiny-sd15 (sd15); "
                     "use an enhancer trained on a sd15 model."}
    assert not any((tmp_path / name).exists() for name in ("s", "e.h5", "t"))


@pytest.mark.reliability("bad input")
def test_an_enhancer_of_another_width_gets_one_sentence_in_every_command(dice, prompts_file, tmp_path):
    wide = tmp_path / "wide.safetensors"
    save_enhancer(Enhancer(768), wide, family="sd15", tokens=77, trained_on="sd15")
    results = three_commands(dice, tmp_path, prompts_file, wide, "tiny-sd15")
    assert all(r.code == 2 for r in results)
    assert len({error_line(r) for r in results}) == 1
    assert "768-wide embeddings but tiny-sd15 produces 32-wide" in error_line(results[0])


@pytest.fixture(scope="module")
def fingerprinted_enhancer(tmp_path_factory, tiny_sd15_dir):
    """An enhancer for tiny-sd15 that records its text encoder, as `dice distill` writes them."""
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    fingerprint = load_adapter(resolve_model("tiny-sd15"), torch.device("cpu"), torch.float32).text_encoder_fingerprint()
    return random_enhancer_file(tmp_path_factory.mktemp("fp") / "fp-enh.safetensors", scale=0.05,
                                text_encoder_fingerprint=fingerprint)


def test_another_text_encoder_of_the_family_is_a_transfer_with_the_same_note(dice, prompts_file, tmp_path,
                                                                             fingerprinted_enhancer, other_sd15_dir):
    results = three_commands(dice, tmp_path, prompts_file, fingerprinted_enhancer, other_sd15_dir)
    assert all(r.code == 0 for r in results), [r.stderr for r in results]
    expected = (f"note: enhancer fp-enh.safetensors come from tiny-sd15, whose text encoder differs from {other_sd15_dir}'s; "
                f"using them with {other_sd15_dir} as a transfer (docs/architecture.md, \"Preparation\").")
    assert all(note_lines(r) == [expected] for r in results), [note_lines(r) for r in results]
    same = dice("sample", prompts_file, "--enhancer", fingerprinted_enhancer, "--steps", "1", "-o", tmp_path / "same")
    assert same.code == 0 and note_lines(same) == []  # trained_on is the model: nothing to say
    quiet = dice("sample", prompts_file, "--enhancer", fingerprinted_enhancer, "--model", other_sd15_dir, "--steps", "1",
                 "-o", tmp_path / "s", "-q")
    assert quiet.code == 0 and quiet.stderr == ""


def test_a_cache_of_another_text_encoder_gets_the_same_note_in_sample_and_enhance(dice, prompts_file, tmp_path,
                                                                                  enhancer_file, other_sd15_dir):
    cache = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15").code == 0
    sampled = dice("sample", cache, "--model", other_sd15_dir, "--enhancer", enhancer_file, "--steps", "1", "-o", tmp_path / "s")
    enhanced = dice("enhance", cache, "--model", other_sd15_dir, "--enhancer", enhancer_file, "-o", tmp_path / "e.h5")
    assert sampled.code == 0 and enhanced.code == 0, (sampled.stderr, enhanced.stderr)
    expected = (f"note: the embeddings in {cache} come from tiny-sd15, whose text encoder differs from {other_sd15_dir}'s; "
                f"using them with {other_sd15_dir} as a transfer (docs/architecture.md, \"Preparation\").")
    assert note_lines(sampled) == note_lines(enhanced) == [expected]


def test_the_negative_rule_is_the_same_for_sample_and_enhance(dice, prompts_file, tmp_path, enhancer_file):
    """--negative, else the cache's stored negative, else none: the images of both paths agree."""
    import json

    import numpy as np
    from PIL import Image

    cache = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15", "--negative", "blurry").code == 0
    assert dice("sample", cache, "--enhancer", enhancer_file, "--steps", "2", "-o", tmp_path / "direct").code == 0
    assert dice("enhance", cache, "--enhancer", enhancer_file, "-o", tmp_path / "e.h5").code == 0
    assert dice("sample", tmp_path / "e.h5", "--steps", "2", "-o", tmp_path / "via").code == 0
    for folder in ("direct", "via"):
        settings = json.loads((tmp_path / folder / "dice-sample.json").read_text())
        assert settings["negative_prompt"] == "blurry"
    for name in ("000000.png", "000002.png"):
        a, b = (np.asarray(Image.open(tmp_path / f / name), dtype=np.int16) for f in ("direct", "via"))
        assert np.abs(a - b).max() <= 1  # the cache stores fp32 here: the same embeddings either way


def test_prepare_checks_before_any_weights_load(prompts_file, enhancer_file, monkeypatch):
    from dicecli.loading import Components
    from dicecli.preparation import open_enhancer, prepare, read_input
    from dicecli.settings import SampleOptions

    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"weights loaded: {wanted}"))
    prepared = prepare(read_input(str(prompts_file)), SampleOptions(), open_enhancer(enhancer_file))
    assert prepared.ref.given == "tiny-sd15" and prepared.alpha == 1.0 and prepared.negative == ""
    assert prepared.input.prompts == ["a red cat", "a blue dog on a beach", "a green house"]
    assert prepared.provenance.enhancer == "tiny-enh.safetensors"
    assert set(prepared.input_paths) == {prompts_file, enhancer_file}


def test_the_command_line_imports_no_torch():
    code = "import sys, dicecli.cli.app, dicecli.cli; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    shown = subprocess.run([sys.executable, "-c", "import sys; from dicecli.cli import main; main(['--help'])"],
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "sample" in shown.stdout


def test_help_shows_defaults_from_the_settings():
    import typer

    from dicecli.cli import app
    from dicecli.settings import SampleConfig

    command = typer.main.get_command(app)
    helps = {p.name: p.help or "" for name in ("sample", "transfer", "distill", "encode", "enhance", "eval")
             for p in command.commands[name].params}
    assert helps["steps"].startswith("Sampler steps") or helps["steps"].startswith("Optimizer updates")
    sample_steps = next(p.help for p in command.commands["sample"].params if p.name == "steps")
    assert sample_steps == f"Sampler steps (default: the recipe's, else {SampleConfig.default('steps')})."
    # square brackets are rich markup and vanish from the help screen ("Sampler steps ."): none are left
    assert not [name for name, text in helps.items() if "[" in text or text.rstrip().endswith(" .")]


def test_variant_vae_helper_changes_the_vae_fingerprint(tmp_path, tiny_sd15_dir):
    from helpers import variant_vae

    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    other = variant_vae(tiny_sd15_dir, tmp_path / "other-vae")
    cpu = torch.device("cpu")
    a = load_adapter(resolve_model(str(tiny_sd15_dir)), cpu, torch.float32)
    b = load_adapter(resolve_model(str(other)), cpu, torch.float32)
    assert a.vae_fingerprint() != b.vae_fingerprint() and a.text_encoder_fingerprint() == b.text_encoder_fingerprint()
