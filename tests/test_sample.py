import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run_dice_process


def pixels(folder, count):
    return [np.asarray(Image.open(folder / f"{i:06d}.png")) for i in range(count)]


def test_generate_uses_the_named_scheduler_with_a_reused_pipeline(tiny_sd15_dir):
    """A pipeline passed in for reuse samples with the scheduler named, not the one it was built with."""
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model
    from dicecli.sampling import generate
    from dicecli.settings import SampleConfig

    adapter = load_adapter(resolve_model(str(tiny_sd15_dir)), torch.device("cpu"), torch.float32)
    cond = adapter.encode(["a red cat", "a green house"]).conditioning
    null = adapter.encode([""]).conditioning
    pipe = adapter.pipeline()  # holds the model's own scheduler (PNDM)

    def images(scheduler, pipe=None):
        out = generate(adapter, cond, null, SampleConfig(cfg=5.0, steps=6, scheduler=scheduler, height=32, width=32), [3, 4],
                       pipe)
        return np.stack([np.asarray(i).astype(int) for i in out])

    fresh = images("dpmsolver++")
    assert np.abs(images("dpmsolver++", pipe) - fresh).max() <= 1
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert np.abs(images("pndm", pipe) - fresh).max() > 1


def count_evaluations(monkeypatch):
    from diffusers import UNet2DConditionModel

    rows = []
    original = UNet2DConditionModel.forward

    def counting(self, sample, *args, **kwargs):
        rows.append(sample.shape[0])
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting)
    return rows


@pytest.mark.parametrize("cfg, use_enhancer, per_step", [("1", False, 1), ("1", True, 1), ("5", False, 2), ("5", True, 2)])
def test_denoiser_evaluations(dice, prompts_file, enhancer_file, tmp_path, monkeypatch, cfg, use_enhancer, per_step):
    rows = count_evaluations(monkeypatch)
    extra = ["--enhancer", enhancer_file] if use_enhancer else []
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--cfg", cfg, "--steps", "7", "-o", tmp_path / "s",
                  "--json", *extra)
    assert result.code == 0, result.stderr
    assert sum(rows) / 3 == 7 * per_step  # evaluations per image
    assert json.loads(result.stdout)["nfe_per_image"] == 7 * per_step


@pytest.mark.slow
def test_enhance_pipe_into_sample(prompts_file, enhancer_file, tmp_path, tiny_sd15_dir):
    enhanced = run_dice_process("enhance", prompts_file, "-o", "-", "--enhancer", enhancer_file)
    assert enhanced.returncode == 0, enhanced.stderr.decode()
    out = tmp_path / "out"
    sampled = run_dice_process("sample", "-", "--cfg", "1", "-o", out, "--steps", "4", input=enhanced.stdout)
    assert sampled.returncode == 0, sampled.stderr.decode()
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == ["a red cat", "a blue dog on a beach", "a green house"]
    assert all(r["enhancer"] == "tiny-enh.safetensors" and r["cfg"] == 1.0 for r in records)
    image = Image.open(out / "000001.png")
    assert image.text["prompt"] == "a blue dog on a beach" and image.text["negative_prompt"] == ""
    assert image.text["seed"] == "1" and "DICE enhancer: tiny-enh.safetensors" in image.text["parameters"]


def test_plain_cache_needs_nothing_else_and_matches_prompts(dice, prompts_file, tmp_path):
    cache = tmp_path / "emb.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15").code == 0
    assert dice("sample", cache, "--cfg", "1", "-o", tmp_path / "a", "--steps", "4").code == 0
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--cfg", "1", "-o", tmp_path / "b", "--steps", "4").code == 0
    for a, b in zip(pixels(tmp_path / "a", 3), pixels(tmp_path / "b", 3)):
        assert np.array_equal(a, b)


def test_seed_per_image_whatever_the_batch(dice, prompts_file, tmp_path):
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "4", "--batch-size", "1", "-o", tmp_path / "one").code == 0
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "4", "--batch-size", "3", "-o", tmp_path / "three").code == 0
    for a, b in zip(pixels(tmp_path / "one", 3), pixels(tmp_path / "three", 3)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_rerun_does_nothing_and_other_settings_are_refused(dice, prompts_file, tmp_path):
    out = tmp_path / "s"
    args = ["sample", prompts_file, "--model", "tiny-sd15", "--steps", "4", "-o", out, "--num-per-prompt", "2"]
    first = dice(*args, "--json")
    assert first.code == 0 and json.loads(first.stdout)["generated"] == 6
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = dice(*args, "--json")
    assert again.code == 0 and json.loads(again.stdout)["generated"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    refused = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "5", "-o", out, "--num-per-prompt", "2")
    assert refused.code == 2 and "other settings: steps was 4 there, is 5 now" in refused.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records[:2]] == ["a red cat", "a red cat"] and [r["seed"] for r in records[:2]] == [0, 1]


def test_out_of_memory_before_the_first_image_says_what_to_change_and_does_not_block_the_rerun(
        dice, prompts_file, tmp_path, monkeypatch):
    from dicecli import sampling

    out = tmp_path / "s"
    with monkeypatch.context() as patch:
        oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.\nGPU 0 has a total capacity ...")
        patch.setattr(sampling, "generate", lambda *a, **k: (_ for _ in ()).throw(oom))
        failed = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "4", "--batch-size", "64", "-o", out)
    assert failed.code == 1 and sorted(p.name for p in out.iterdir()) == ["dice-sample.json"]
    assert failed.stderr.strip() == ("error: the GPU ran out of memory; use a smaller --batch-size (dice distill: or a "
                                     "larger --grad-accum, which keeps the images per update), or close what else uses the GPU.")
    rerun = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "3", "-o", out, "--json")
    assert rerun.code == 0, rerun.stderr
    assert json.loads(rerun.stdout)["generated"] == 3 and json.loads((out / "dice-sample.json").read_text())["steps"] == 3


def test_folder_that_is_not_a_sample_folder_is_refused(dice, prompts_file, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"x")
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "-o", tmp_path / "mine")
    assert result.code == 2 and "not a dice sample folder" in result.stderr


@pytest.mark.parametrize("scheduler", ["dpmsolver++", "ddim", "euler", "euler-a", "pndm", "unipc"])
def test_schedulers_by_name(dice, tmp_path, scheduler):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    result = dice("sample", prompts, "--model", "tiny-sd15", "--steps", "3", "--scheduler", scheduler, "-o", tmp_path / "s")
    assert result.code == 0, result.stderr
    assert json.loads((tmp_path / "s" / "metadata.jsonl").read_text())["scheduler"] == scheduler


def test_unknown_scheduler_and_missing_input(dice, prompts_file, tmp_path):
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--scheduler", "heun9", "-o", tmp_path / "s")
    assert result.code == 2 and "--scheduler" in result.stderr and "heun9" in result.stderr and "dpmsolver++" in result.stderr
    assert not (tmp_path / "s").exists()
    result = dice("sample", prompts_file, "-o", tmp_path / "s")
    assert result.code == 2 and "needs --model" in result.stderr


def test_sample_folder_feeds_distill(dice, prompts_file, tmp_path):
    out = tmp_path / "teacher"
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--cfg", "5", "--steps", "3", "-o", out).code == 0
    result = dice("distill", "--model", "tiny-sd15", "--data", out, "--steps", "1", "--batch-size", "2",
                  "--no-validate", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    assert result.code == 0, result.stderr
