import json

import h5py
import numpy as np
import pytest

from helpers import run_dice_process
from dicecli.enhancer import Enhancer, file_sha256, save_enhancer


def read(path):
    with h5py.File(path) as f:
        return dict(f.attrs), [p.decode() for p in f["prompts"][:]], f["prompt_embeds"][:], [p.decode() for p in f["negative_prompts"][:]] if "negative_prompts" in f else []


def test_enhance_prompts_and_cache_agree(dice, prompts_file, enhancer_file, tmp_path):
    direct = tmp_path / "direct.h5"
    result = dice("enhance", prompts_file, "-o", direct, "--enhancer", enhancer_file, "--alpha", "1.5", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny-sd15"  # from the enhancer's trained_on
    plain = tmp_path / "plain.h5"
    assert dice("encode", prompts_file, "-o", plain, "--model", "tiny-sd15").code == 0
    via_cache = tmp_path / "via.h5"
    assert dice("enhance", plain, "-o", via_cache, "--enhancer", enhancer_file, "--alpha", "1.5").code == 0

    attrs, prompts, embeds, negatives = read(direct)
    _, _, embeds2, _ = read(via_cache)
    _, _, original, _ = read(plain)
    np.testing.assert_allclose(embeds, embeds2, atol=1e-6)
    assert attrs["enhancer"] == "tiny-enh.safetensors" and attrs["enhancer_sha256"] == file_sha256(enhancer_file)
    assert attrs["alpha"] == 1.5 and attrs["format"] == "dice-embeddings" and negatives == [""]
    np.testing.assert_array_equal(embeds[:, 0], original[:, 0])  # first token kept
    assert np.abs(embeds[:, 1:] - original[:, 1:]).mean() > 1e-3


def test_enhance_uses_the_negative_prompt(dice, prompts_file, enhancer_file, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert dice("enhance", prompts_file, "-o", a, "--enhancer", enhancer_file).code == 0
    assert dice("enhance", prompts_file, "-o", b, "--enhancer", enhancer_file, "--negative", "blurry, watermark").code == 0
    assert read(b)[3] == ["blurry, watermark"]
    assert not np.allclose(read(a)[2], read(b)[2])


def test_enhance_loads_only_the_text_encoder(dice, prompts_file, enhancer_file, tmp_path, monkeypatch):
    from dicecli.loading import Components

    loaded = []
    original = Components._load_pipeline

    def spy(self, wanted):
        loaded.extend(wanted)
        return original(self, wanted)

    monkeypatch.setattr(Components, "_load_pipeline", spy)
    assert dice("enhance", prompts_file, "-o", tmp_path / "e.h5", "--enhancer", enhancer_file).code == 0
    assert set(loaded) == {"tokenizer", "text_encoder"}


@pytest.mark.slow
def test_enhance_stdin_to_stdout(prompts_file, enhancer_file, tmp_path, tiny_sd15_dir):
    encoded = run_dice_process("encode", prompts_file, "-o", "-", "--model", "tiny-sd15")
    assert encoded.returncode == 0
    enhanced = run_dice_process("enhance", "-", "-o", "-", "--enhancer", enhancer_file, input=encoded.stdout)
    assert enhanced.returncode == 0, enhanced.stderr.decode()
    path = tmp_path / "out.h5"
    path.write_bytes(enhanced.stdout)
    attrs, prompts, _, _ = read(path)
    assert prompts == ["a red cat", "a blue dog on a beach", "a green house"] and attrs["alpha"] == 1.0


def test_enhancer_of_another_family_or_dimension_is_refused(dice, prompts_file, tmp_path):
    sdxl = tmp_path / "sdxl.safetensors"
    save_enhancer(Enhancer(2048), sdxl, family="sdxl", tokens=77, trained_on="sdxl")
    result = dice("enhance", prompts_file, "-o", tmp_path / "x.h5", "--enhancer", sdxl, "--model", "tiny-sd15")
    assert result.code == 2 and "trained for the sdxl family" in result.stderr and "Traceback" not in result.stderr
    wide = tmp_path / "wide.safetensors"
    save_enhancer(Enhancer(768), wide, family="sd15", tokens=77, trained_on="sd15")
    result = dice("enhance", prompts_file, "-o", tmp_path / "x.h5", "--enhancer", wide, "--model", "tiny-sd15")
    assert result.code == 2 and "768-wide embeddings but tiny-sd15 produces 32-wide" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_enhancing_twice_is_refused(dice, prompts_file, enhancer_file, tmp_path):
    once = tmp_path / "once.h5"
    assert dice("enhance", prompts_file, "-o", once, "--enhancer", enhancer_file).code == 0
    result = dice("enhance", once, "-o", tmp_path / "twice.h5", "--enhancer", enhancer_file)
    assert result.code == 2 and "already enhanced" in result.stderr


def test_a_recipes_enhance_table_sets_the_batch_size(dice, prompts_file, enhancer_file, tiny_sd15_dir, tmp_path,
                                                     monkeypatch):
    """[enhance] batch_size of the model's recipe is honoured, --batch-size overrides it; the cache is the same."""
    import dicecli.enhance

    calls = []
    original = dicecli.enhance.enhance_conditioning
    monkeypatch.setattr(dicecli.enhance, "enhance_conditioning", lambda *a, **k: calls.append(len(a[1])) or original(*a, **k))
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'family = "sd15"\n[source]\npath = "{tiny_sd15_dir}"\n[enhance]\nbatch_size = 1\n')
    runs = {"recipe": [], "option": ["--batch-size", "2"], "default": None}
    made = {}
    for name, extra in runs.items():
        calls.clear()
        model = tiny_sd15_dir if extra is None else recipe
        result = dice("enhance", prompts_file, "-o", tmp_path / f"{name}.h5", "--enhancer", enhancer_file,
                      "--model", model, *(extra or []))
        assert result.code == 0, result.stderr
        made[name] = list(calls)
    assert made == {"recipe": [1, 1, 1], "option": [2, 1], "default": [3]}
    with h5py.File(tmp_path / "recipe.h5") as a, h5py.File(tmp_path / "default.h5") as b:
        np.testing.assert_array_equal(a["prompt_embeds"][:], b["prompt_embeds"][:])
