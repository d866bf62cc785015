import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers import run_dice_process


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    """16 random images with captions, as `dice sample` or a user would lay them out."""
    folder = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    with open(folder / "metadata.jsonl", "w") as f:
        for i in range(16):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
            f.write(json.dumps({"file_name": f"{i:06d}.png", "text": f"a photo of thing number {i}"}) + "\n")
    return folder


def distill_args(data, work, out, *extra):
    return ["distill", "--model", "tiny-sd15", "--data", data, "--work-dir", work, "-o", out,
            "--batch-size", "4", "--grad-accum", "2", "--seed", "3", *extra]


def test_distill_writes_enhancer_log_checkpoints_and_grid(dice, imagefolder, tmp_path):
    out = tmp_path / "e.safetensors"
    result = dice(*distill_args(imagefolder, tmp_path / "run", out, "--steps", "4", "--checkpoint-every", "2", "--json"))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 4 and summary["output"] == str(out)
    from dicecli.enhancer import read_metadata

    meta = read_metadata(out)
    assert (meta["family"], meta["trained_on"], meta["steps"], meta["batch_size"]) == ("sd15", "tiny-sd15", 4, 4)
    assert (meta["guidance_scale"], meta["loss"], meta["negative_prompts"], meta["tokens"]) == (5.0, "l1", "builtin-v1", 77)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in log)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-0000002", "step-0000004"]
    grid = Image.open(tmp_path / "run" / "checkpoints" / "step-0000004" / "validation.png")
    assert grid.width == 3 * 32  # unguided | CFG | DICE


def test_latent_cache_gives_same_training_as_images(dice, imagefolder, tmp_path):
    latents = tmp_path / "latents.h5"
    result = dice("encode", "--images", imagefolder, "-o", latents, "--model", "tiny-sd15", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["latent_shape"] == [4, 16, 16]
    import h5py

    with h5py.File(latents) as f:
        assert f.attrs["format"] == "dice-latents" and f["latents"].shape == (16, 4, 16, 16)
        assert f["prompts"][0].decode() == "a photo of thing number 0"
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert dice(*distill_args(imagefolder, tmp_path / "ra", a, "--steps", "2", "--no-validate")).code == 0
    assert dice(*distill_args(latents, tmp_path / "rb", b, "--steps", "2", "--no-validate")).code == 0
    for key, value in load_file(str(a)).items():
        torch.testing.assert_close(load_file(str(b))[key], value, atol=1e-5, rtol=1e-4, msg=key)


def test_caption_embeddings_in_the_latent_cache_train_the_same_enhancer_without_the_text_encoder(dice, imagefolder, tmp_path):
    """dice encode --images stores the captions' embeddings; distill reads them instead of running the text
    encoder at every step, and frees it: the same enhancer bytes as encoding on the fly."""
    import shutil

    import h5py

    from dicecli.data import open_training_data
    from dicecli.distill import Distiller
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model
    from dicecli.settings import DistillConfig

    cached, plain = tmp_path / "cached.h5", tmp_path / "plain.h5"
    assert dice("encode", "--images", imagefolder, "-o", cached, "--model", "tiny-sd15").code == 0
    shutil.copyfile(cached, plain)
    with h5py.File(plain, "a") as f:
        assert f["prompt_embeds"].shape == (16, 77, 32)
        for name in ("prompt_embeds", "eos_index"):
            del f[name]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert dice(*distill_args(plain, tmp_path / "ra", a, "--steps", "3")).code == 0
    assert dice(*distill_args(cached, tmp_path / "rb", b, "--steps", "3")).code == 0
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "rb" / "checkpoints" / "step-0000003" / "validation.png").is_file()

    adapter = load_adapter(resolve_model("tiny-sd15"), torch.device("cpu"), torch.float32)
    trainer = Distiller(adapter, open_training_data(str(cached)), DistillConfig(steps=1, batch_size=2), work_dir=tmp_path / "w",
                        output=tmp_path / "w.safetensors", model_name="tiny-sd15")
    assert trainer.batches.caption_cache is not None and adapter.components.modules["text_encoder"] is None


def test_only_the_enhancer_trains():
    from pathlib import Path

    from dicecli.data import TrainingData
    from dicecli.distill import DistillConfig, Distiller
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model("tiny-sd15"), torch.device("cpu"), torch.float32)
    data = TrainingData(["a", "b", "c", "d"], latents=torch.randn(4, 4, 16, 16))
    config = DistillConfig(steps=1, batch_size=4, negative_prompts="none", validate=False)
    trainer = Distiller(adapter, data, config, work_dir=Path("unused"), output=Path("unused.safetensors"), model_name="tiny-sd15")
    unet_before = {k: v.clone() for k, v in adapter.unet.state_dict().items()}
    batch = trainer.batches.draw(0, 0)
    from dicecli.method import dice_loss

    loss = dice_loss(adapter, trainer.enhancer, trainer.batches.noise_scheduler, batch, 5.0, "l1")
    loss.backward()
    assert all(p.grad is None for p in adapter.unet.parameters())
    assert all(p.grad is None for p in adapter.text_encoder.parameters())
    assert trainer.enhancer.fc2.weight.grad.abs().sum() > 0  # reached through the frozen UNet
    assert all(torch.equal(v, adapter.unet.state_dict()[k]) for k, v in unet_before.items())


def test_resume_with_other_settings_is_refused(dice, imagefolder, tmp_path):
    assert dice(*distill_args(imagefolder, tmp_path / "r", tmp_path / "e.safetensors", "--steps", "2", "--no-validate")).code == 0
    result = dice(*distill_args(imagefolder, tmp_path / "r", tmp_path / "e.safetensors", "--steps", "4", "--no-validate",
                                "--resume", "--guidance-scale", "7"))
    assert result.code == 2 and "guidance_scale=5.0" in result.stderr and "Traceback" not in result.stderr


def test_schedule_ema_and_timestep_options_train_and_resume_exactly(dice, imagefolder, tmp_path):
    """--lr-schedule/--warmup-steps follow diffusers' curve, --ema writes the average (not the last weights),
    --timesteps logit-normal changes the draws, and a run stopped at a checkpoint resumes to the same result."""
    options = ["--lr-schedule", "cosine", "--warmup-steps", "2", "--ema", "0.9", "--timesteps", "logit-normal",
               "--no-validate", "--checkpoint-every", "3"]
    whole = tmp_path / "whole.safetensors"
    assert dice(*distill_args(imagefolder, tmp_path / "w", whole, "--steps", "6", *options)).code == 0
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "w" / "train_log.jsonl").read_text().splitlines()]
    # diffusers' warm-up (step / warm-up steps: 0, 1e-4), then cosine from 2e-4 over the remaining 4 steps
    expected = [0.0, 1e-4] + [2e-4 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6, atol=1e-12)

    split = tmp_path / "split.safetensors"
    assert dice(*distill_args(imagefolder, tmp_path / "s", split, "--steps", "3", *options)).code == 0
    assert dice(*distill_args(imagefolder, tmp_path / "s", split, "--steps", "6", "--resume", *options)).code == 0
    for key, value in load_file(str(whole)).items():
        torch.testing.assert_close(load_file(str(split))[key], value, atol=1e-6, rtol=1e-5, msg=key)

    from dicecli.enhancer import read_metadata

    meta = read_metadata(whole)
    assert (meta["ema"], meta["lr_schedule"], meta["warmup_steps"], meta["timesteps"]) == (0.9, "cosine", 2, "logit-normal")
    assert meta["weights"] == "ema average"
    raw = tmp_path / "w" / "checkpoints" / "step-0000006" / "enhancer.safetensors"
    assert read_metadata(raw)["weights"] == "trained"  # the checkpoint's raw weights say so, though the run had --ema
    last = load_file(str(raw))
    assert any(not torch.equal(last[k], v) for k, v in load_file(str(whole)).items())
    average = load_file(str(tmp_path / "w" / "checkpoints" / "step-0000006" / "enhancer-ema.safetensors"))
    assert all(torch.equal(average[k], v) for k, v in load_file(str(whole)).items())
    resumed = dice(*distill_args(imagefolder, tmp_path / "s", split, "--steps", "9", "--resume", *options[:-3],
                                 "--ema", "0.99"))
    assert resumed.code == 2 and "ema=0.9" in resumed.stderr


def test_logit_normal_timesteps_concentrate_mid_range():
    from pathlib import Path

    from dicecli.data import TrainingData
    from dicecli.distill import DistillConfig, Distiller
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    adapter = load_adapter(resolve_model("tiny-sd15"), torch.device("cpu"), torch.float32)
    data = TrainingData(["a", "b"], latents=torch.randn(2, 4, 16, 16))
    draws = {}
    for kind in ("uniform", "logit-normal"):
        config = DistillConfig(steps=1, batch_size=2, negative_prompts="none", validate=False, timesteps=kind)
        trainer = Distiller(adapter, data, config, work_dir=Path("unused"), output=Path("unused.safetensors"),
                            model_name="tiny-sd15")
        draws[kind] = trainer.batches.timesteps(20_000, torch.Generator().manual_seed(0)).float()
    middle = {k: ((t >= 250) & (t < 750)).float().mean().item() for k, t in draws.items()}
    assert abs(middle["uniform"] - 0.5) < 0.02 and middle["logit-normal"] > 0.7  # P(|N(0,1)| < logit 0.75) = 0.73
    assert draws["logit-normal"].min() >= 0 and draws["logit-normal"].max() <= 999


def test_recipe_default_data_missing_says_how_to_provide_it(dice, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DICE_COCO_DIR", str(tmp_path / "coco"))
    recipe = tmp_path / "ds.toml"
    from dicecli.builtin import builtin_path

    recipe.write_text(f'name = "ds"\nfamily = "sd15"\n[source]\npath = "{builtin_path("tiny-sd15")}"\n[distill]\ndata = "coco2017-train"\n')
    result = dice("distill", "--model", recipe)
    assert result.code == 2
    assert "COCO 2017" in result.stderr and "DICE_COCO_DIR" in result.stderr and str(tmp_path / "coco") in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_not_divisible_by_accumulation(dice, imagefolder, tmp_path):
    result = dice("distill", "--model", "tiny-sd15", "--data", imagefolder, "--batch-size", "6", "--grad-accum", "4",
                  "--work-dir", tmp_path / "w")
    assert result.code == 2 and "--batch-size 6 must be divisible" in result.stderr


def test_negative_corpus_has_100_distinct_prompts():
    from dicecli.prompts import negative_corpus

    prompts, name = negative_corpus("builtin")
    assert len(prompts) >= 100 and len(set(prompts)) == len(prompts) and name == "builtin-v1"
    assert "watermark" in prompts and "extra limbs" in prompts


@pytest.mark.slow
def test_two_processes_train_like_one(imagefolder, tmp_path, tiny_sd15_dir):
    """torchrun with 2 CPU processes (gloo): data sharded, loss averaged, one writer, same enhancer as 1 process."""
    import os

    common = ["--steps", "3", "--batch-size", "8", "--no-validate", "--device", "cpu", "--seed", "1", "--json"]
    single = run_dice_process("distill", "--model", "tiny-sd15", "--data", imagefolder, "--work-dir", tmp_path / "one",
                              "-o", tmp_path / "one.safetensors", *common)
    assert single.returncode == 0, single.stderr.decode()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m", "dicecli",
         "distill", "--model", "tiny-sd15", "--data", str(imagefolder), "--work-dir", str(tmp_path / "two"),
         "-o", str(tmp_path / "two.safetensors"), *common],
        capture_output=True, timeout=300, env=env,
    )
    errors = [line for line in double.stderr.decode().splitlines() if line.startswith("error:")]  # torchrun's summary hides them
    assert double.returncode == 0, errors or double.stderr.decode()[-2000:]
    assert double.stdout.decode().count('"output"') == 1  # one process reports
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-6, rtol=1e-4, msg=key)
    assert len((tmp_path / "two" / "train_log.jsonl").read_text().splitlines()) == 3
