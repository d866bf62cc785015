import json

import pytest
from PIL import Image

from dicecli.enhancer import Enhancer, save_enhancer
from helpers import grid_size


def test_transfer_to_two_models(dice, prompts_file, enhancer_file, other_sd15_dir, tmp_path):
    out = tmp_path / "transfer"
    result = dice("transfer", enhancer_file, prompts_file, "--to", f"tiny-sd15,{other_sd15_dir}", "-o", out,
                  "--steps", "3", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert sorted(summary["folders"]) == sorted(
        [str(out / "tiny-sd15" / "unguided"), str(out / "tiny-sd15" / "tiny-enh"),
         str(out / "other-sd15" / "unguided"), str(out / "other-sd15" / "tiny-enh")]
    )
    for folder in summary["folders"]:
        assert len((out / folder.split("transfer/")[1] / "metadata.jsonl").read_text().splitlines()) == 3
    enhanced = json.loads((out / "other-sd15" / "tiny-enh" / "metadata.jsonl").read_text().splitlines()[0])
    assert enhanced["enhancer"] == "tiny-enh.safetensors" and enhanced["model"] == str(other_sd15_dir)
    grid = Image.open(out / "grid.png")
    assert grid.size == grid_size(["unguided", "tiny-enh"], 2 * 3, 32, row_titles=True)  # 2 models x 3 prompts
    report = {entry["target"]: entry["sources"][0] for entry in json.loads((out / "compatibility.json").read_text())}
    assert report["tiny-sd15"]["mean_cosine"] == pytest.approx(1.0) and report["tiny-sd15"]["same_text_encoder"]
    assert report[str(other_sd15_dir)]["mean_cosine"] < 0.999 and not report[str(other_sd15_dir)]["same_text_encoder"]
    assert "| tiny-sd15 | tiny-sd15 |" in (out / "compatibility.md").read_text()


def test_transfer_refuses_other_family_before_loading_weights(dice, prompts_file, tmp_path, monkeypatch):
    from dicecli.loading import Components

    def forbidden(self, wanted):
        raise AssertionError(f"weights were loaded: {wanted}")

    monkeypatch.setattr(Components, "_load_pipeline", forbidden)
    sdxl = tmp_path / "sdxl-enh.safetensors"
    save_enhancer(Enhancer(2048), sdxl, family="sdxl", tokens=77, trained_on="sdxl")
    result = dice("transfer", sdxl, prompts_file, "--to", "tiny-sd15", "-o", tmp_path / "t")
    assert result.code == 2, result.stderr
    assert "trained for the sdxl family and cannot be used with tiny-sd15" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "t").exists()


def test_transfer_refuses_other_dimension_before_loading_weights(dice, prompts_file, tmp_path, monkeypatch):
    from dicecli.loading import Components

    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: (_ for _ in ()).throw(AssertionError(wanted)))
    wide = tmp_path / "sd15-enh.safetensors"
    save_enhancer(Enhancer(768), wide, family="sd15", tokens=77, trained_on="sd15")
    result = dice("transfer", wide, prompts_file, "--to", "tiny-sd15", "-o", tmp_path / "t")
    assert result.code == 2 and "768-wide embeddings but tiny-sd15 produces 32-wide" in result.stderr
