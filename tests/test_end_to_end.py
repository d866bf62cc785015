"""The whole tool offline on tiny-sd15: encode -> distill -> enhance -> sample --cfg 1 -> eval."""

import json

import numpy as np
from PIL import Image


def test_encode_distill_enhance_sample_eval(dice, tmp_path, tiny_clip_dir, tiny_aesthetic_weights):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\na blue dog on a beach\na green house\na yellow car at night\n")
    # Teacher images with CFG: prompt-only distillation data.
    assert dice("sample", prompts, "--model", "tiny-sd15", "--cfg", "5", "--steps", "4", "-o", tmp_path / "teacher").code == 0
    assert dice("encode", prompts, "-o", tmp_path / "emb.h5", "--model", "tiny-sd15").code == 0
    distilled = dice("distill", "--model", "tiny-sd15", "--data", tmp_path / "teacher", "--steps", "3", "--batch-size", "4",
                     "--work-dir", tmp_path / "run", "-o", tmp_path / "e.safetensors", "--checkpoint-every", "3", "--json")
    assert distilled.code == 0, distilled.stderr
    assert dice("enhance", tmp_path / "emb.h5", "-o", tmp_path / "enhanced.h5", "--enhancer", tmp_path / "e.safetensors").code == 0
    sampled = dice("sample", tmp_path / "enhanced.h5", "--cfg", "1", "--steps", "4", "-o", tmp_path / "dice", "--json")
    assert sampled.code == 0 and json.loads(sampled.stdout)["nfe_per_image"] == 4
    assert dice("sample", prompts, "--model", "tiny-sd15", "--steps", "4", "-o", tmp_path / "unguided").code == 0
    result = dice("eval", tmp_path / "unguided", tmp_path / "dice", tmp_path / "teacher", "--ref", tmp_path / "teacher",
                  "--fid-features", "tiny-random", "--clip-model", tiny_clip_dir, "--aesthetic-clip", tiny_clip_dir,
                  "--aesthetic-weights", tiny_aesthetic_weights)
    assert result.code == 0, result.stderr
    table = result.stdout.splitlines()
    assert table[0].startswith("| folder | model | method |") and "FID ↓" in table[0] and "CLIP ↑" in table[0]
    assert [line.split(" | ")[2] for line in table[2:]] == ["unguided", "DICE", "CFG"]
    assert np.asarray(Image.open(tmp_path / "dice" / "000000.png")).shape == (32, 32, 3)
