"""Nothing silently wrong, nothing overwritten: damaged artifacts are refused when opened, and no output replaces
one of the command's inputs or something that is not a regular file (docs/reliability.md)."""

import os
import stat

import h5py
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from helpers import grid_size, variant_vae, write_imagefolder


def one_sentence(result, code: int, *parts: str) -> None:
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error: ") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)


@pytest.fixture
def nan_enhancer(tmp_path, enhancer_file):
    from safetensors import safe_open

    with safe_open(str(enhancer_file), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(enhancer_file))
    tensors["fc2.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.reliability("damaged artifact")
@pytest.mark.parametrize("command", ["sample", "enhance"])
def test_an_enhancer_with_nan_weights_is_refused(dice, prompts_file, nan_enhancer, tmp_path, command):
    out = tmp_path / ("out" if command == "sample" else "out.h5")
    result = dice(command, prompts_file, "--enhancer", nan_enhancer, "-o", out, *(["--steps", "1"] if command == "sample" else []))
    one_sentence(result, 1, str(nan_enhancer), "NaN or infinite weights", "fc2.weight")
    assert not out.exists() or not any(out.glob("*.png"))


@pytest.fixture
def cache(dice, prompts_file, tmp_path):
    path = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", path, "--model", "tiny-sd15").code == 0
    return path


@pytest.mark.reliability("damaged artifact")
@pytest.mark.parametrize("command", ["sample", "enhance"])
def test_a_cache_with_nan_rows_is_refused(dice, cache, enhancer_file, tmp_path, command):
    with h5py.File(cache, "a") as f:
        f["prompt_embeds"][1, 3, 0] = np.nan
    out = tmp_path / ("out" if command == "sample" else "out.h5")
    result = dice(command, cache, "--enhancer", enhancer_file, "-o", out, *(["--steps", "1"] if command == "sample" else []))
    one_sentence(result, 1, str(cache), "NaN or infinite numbers in prompt_embeds")
    assert not out.exists()


@pytest.mark.reliability("damaged artifact")
def test_a_cache_whose_counts_disagree_is_refused(dice, cache, tmp_path):
    with h5py.File(cache, "a") as f:
        f["prompt_embeds"].resize(2, axis=0)
    result = dice("sample", cache, "--steps", "1", "-o", tmp_path / "s")
    one_sentence(result, 1, str(cache), "holds 3 prompts but 2 rows of prompt_embeds")
    assert not (tmp_path / "s").exists()


@pytest.mark.reliability("damaged artifact")
def test_a_damaged_cache_on_standard_input_is_called_standard_input(dice, cache, tmp_path):
    with h5py.File(cache, "a") as f:
        f["eos_index"].resize(1, axis=0)
    result = dice("sample", "-", "--steps", "1", "-o", tmp_path / "s", input=cache.read_bytes())
    one_sentence(result, 1, "standard input holds 3 prompts but 1 rows of eos_index")
    assert "dice-stdin" not in result.stderr


@pytest.mark.reliability("damaged artifact")
def test_a_latent_cache_of_another_vae_is_refused_unless_allowed(dice, tmp_path, tiny_sd15_dir):
    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog"])
    latents = tmp_path / "lat.h5"
    assert dice("encode", "--images", data, "-o", latents, "--model", "tiny-sd15", "--resolution", "32").code == 0
    other = variant_vae(tiny_sd15_dir, tmp_path / "other")
    args = ["distill", "--model", other, "--data", latents, "--steps", "1", "--batch-size", "2", "--no-validate",
            "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors"]
    one_sentence(dice(*args), 2, str(latents), "another VAE", "--allow-other-vae")
    assert not (tmp_path / "e.safetensors").exists()
    assert dice(*args, "--allow-other-vae").code == 0
    same = dice("distill", "--model", "tiny-sd15", "--data", latents, "--steps", "1", "--batch-size", "2",
                "--no-validate", "--work-dir", tmp_path / "w2", "-o", tmp_path / "e2.safetensors")
    assert same.code == 0, same.stderr


# -- outputs never destroy: one rule (files.check_output) in every command ---------------------------------------
def sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.reliability("output onto an input")
def test_enhance_onto_its_own_enhancer(dice, prompts_file, enhancer_file, tmp_path):
    import shutil

    enhancer = tmp_path / "e.safetensors"
    shutil.copy(enhancer_file, enhancer)
    before = sha(enhancer)
    one_sentence(dice("enhance", prompts_file, "--enhancer", enhancer, "-o", enhancer), 2, "would replace or write into the input")
    assert sha(enhancer) == before


@pytest.mark.reliability("output onto an input")
def test_distill_onto_its_own_latent_cache(dice, tmp_path):
    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog"])
    latents = tmp_path / "lat.h5"
    assert dice("encode", "--images", data, "-o", latents, "--model", "tiny-sd15", "--resolution", "32").code == 0
    before = sha(latents)
    result = dice("distill", "--model", "tiny-sd15", "--data", latents, "-o", latents, "--steps", "1", "--batch-size", "2",
                  "--work-dir", tmp_path / "w")
    one_sentence(result, 2, "would replace or write into the input")
    assert sha(latents) == before


@pytest.mark.reliability("output onto an input")
def test_encode_onto_its_own_prompts_and_the_model_files(dice, prompts_file, tmp_path, tiny_sd15_dir):
    before = sha(prompts_file)
    one_sentence(dice("encode", prompts_file, "-o", prompts_file, "--model", "tiny-sd15"), 2, "would replace or write into the input")
    assert sha(prompts_file) == before
    inside = tmp_path / "model"
    import shutil

    shutil.copytree(tiny_sd15_dir, inside)
    before = sha(inside / "model_index.json")
    one_sentence(dice("encode", prompts_file, "-o", inside / "model_index.json", "--model", inside), 2,
                 "would replace or write into the input")
    assert sha(inside / "model_index.json") == before
    assert dice("encode", prompts_file, "-o", inside / "new.h5", "--model", inside).code == 0  # a new file beside them


@pytest.mark.reliability("output onto an input")
def test_sample_into_a_folder_holding_its_prompts(dice, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    prompts = folder / "metadata.jsonl"
    prompts.write_text('{"text": "a red cat"}\n')
    before = sha(prompts)
    one_sentence(dice("sample", prompts, "--model", "tiny-sd15", "--steps", "1", "-o", folder), 2,
                 "would replace or write into the input")
    assert sha(prompts) == before


@pytest.mark.reliability("output onto an input")
def test_an_output_through_a_link_to_an_input_is_refused(dice, cache, enhancer_file, tmp_path):
    link = tmp_path / "link.h5"
    link.symlink_to(cache)
    before = sha(cache)
    one_sentence(dice("enhance", cache, "--enhancer", enhancer_file, "-o", link), 2, "would replace or write into the input")
    assert sha(cache) == before and link.is_symlink()


@pytest.mark.reliability("output onto a device")
@pytest.mark.parametrize("command", ["encode", "enhance", "distill", "fid-stats"])
def test_an_output_that_is_a_device_or_fifo_is_never_replaced(dice, prompts_file, enhancer_file, tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = {"encode": ["encode", prompts_file, "--model", "tiny-sd15"],
            "enhance": ["enhance", prompts_file, "--enhancer", enhancer_file],
            "distill": ["distill", "--model", "tiny-sd15", "--data", write_imagefolder(tmp_path / "d", ["a cat"]),
                        "--work-dir", tmp_path / "w"],
            "fid-stats": ["fid-stats", tmp_path, "--fid-features", "tiny-random"]}[command]
    for target in (fifo, "/dev/null"):
        one_sentence(dice(*args, "-o", target), 2, f"Output {target}", "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.reliability("output onto an input")
def test_eval_report_onto_an_input(dice, tmp_path):
    """REPORT.json would replace a file of the folder being evaluated: refused before any metric runs."""
    from helpers import write_imagefolder

    folder = write_imagefolder(tmp_path / "imgs", ["a cat", "a dog"])
    (folder / "r.json").write_text("{}")
    one_sentence(dice("eval", folder, "--metrics", "fid", "--ref", folder, "--fid-features", "tiny-random", "-o", folder / "r"),
                 2, "would replace or write into the input")
    assert (folder / "r.json").read_text() == "{}" and not (folder / "r.md").exists()


# -- numbers and sizes checked before any work ------------------------------------------------------------------
@pytest.mark.reliability("seed or size")
@pytest.mark.parametrize("seed, part", [("-1", "--seed -1 must be 0 or more"),
                                        (str(2**64), "passes the generator's limit of 2**64 - 1"),
                                        (str(2**64 - 2), "seed + 2 passes the generator's limit")])
def test_seeds_beyond_the_generator_are_refused_before_any_file(dice, prompts_file, tmp_path, seed, part):
    out = tmp_path / "s"
    one_sentence(dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "--seed", seed, "-o", out), 2, part)
    assert not out.exists()
    last = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "--seed", str(2**64 - 3), "-o", tmp_path / "ok")
    assert last.code == 0, last.stderr  # seeds 2**64 - 3 .. 2**64 - 1 are all valid


@pytest.mark.reliability("seed or size")
def test_distill_seed_range(dice, tmp_path):
    data = write_imagefolder(tmp_path / "d", ["a cat"])
    result = dice("distill", "--model", "tiny-sd15", "--data", data, "--seed", str(2**40), "--work-dir", tmp_path / "w",
                  "-o", tmp_path / "e.safetensors")
    one_sentence(result, 2, "--seed 1099511627776 must be between 0 and 4294967295")


@pytest.mark.reliability("seed or size")
def test_more_steps_than_training_timesteps(dice, prompts_file, tmp_path):
    one_sentence(dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1001", "-o", tmp_path / "s"), 2,
                 "--steps 1001 is more than the model's 1000 training timesteps")
    assert not (tmp_path / "s").exists()


@pytest.mark.reliability("seed or size")
def test_a_size_the_machine_cannot_hold_is_refused_before_loading(dice, prompts_file, tmp_path, monkeypatch):
    from dicecli.loading import Components

    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"weights loaded: {wanted}"))
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--height", "16384", "--width", "16384", "-o", tmp_path / "s")
    one_sentence(result, 2, "--height 16384 --width 16384 (16384x16384) needs at least", "GiB for one image's VAE pass",
                 "use a smaller size")
    assert not (tmp_path / "s").exists()


def test_sizes_far_from_native_and_batches_that_do_not_fit_get_a_note(dice, prompts_file, tmp_path, monkeypatch):
    import dicecli.runtime

    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "--height", "128", "--width", "64",
                  "-o", tmp_path / "big")
    assert result.code == 0, result.stderr
    assert "note: 64x128 is far from tiny-sd15's native 32x32" in result.stderr
    monkeypatch.setattr(dicecli.runtime, "device_memory", lambda device: 32 * 32 * 512 * 4 * 2)  # two images' worth
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "--batch-size", "3", "-o", tmp_path / "s")
    assert result.code == 0 and "--batch-size 2 would fit" in result.stderr, result.stderr


def test_local_folder_defaults_to_its_own_native_size(dice, tmp_path, tiny_sd15_dir):
    """A model folder's default size comes from its config (UNet sample size x VAE scale): 32 px, not 512."""
    import json

    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_sd15_dir, folder)
    data = write_imagefolder(tmp_path / "d", ["a cat", "a dog"])
    result = dice("distill", "--model", folder, "--data", data, "--steps", "1", "--batch-size", "2",
                  "--checkpoint-every", "1", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    assert result.code == 0, result.stderr
    trainer = json.loads(next((tmp_path / "w" / "checkpoints").glob("step-*/trainer.json")).read_text())
    assert trainer["config"]["resolution"] == 32
    from PIL import Image

    grid = Image.open(next((tmp_path / "w" / "checkpoints").glob("step-*/validation.png")))
    assert grid.size == grid_size(["unguided", "CFG w=5", "DICE"], 2, 32)  # at the training resolution
    sampled = dice("sample", "-", "--model", folder, "--steps", "1", "-o", tmp_path / "s", input="a cat\n")
    assert sampled.code == 0 and Image.open(tmp_path / "s" / "000000.png").size == (32, 32)


def test_validation_grid_uses_a_latent_caches_resolution(dice, tmp_path, tiny_sd15_dir):
    import shutil

    from PIL import Image

    folder = tmp_path / "m"
    shutil.copytree(tiny_sd15_dir, folder)
    data = write_imagefolder(tmp_path / "d", ["a cat", "a dog"], size=(48, 48))
    latents = tmp_path / "lat.h5"
    assert dice("encode", "--images", data, "-o", latents, "--model", folder, "--resolution", "48").code == 0
    result = dice("distill", "--model", folder, "--data", latents, "--steps", "1", "--batch-size", "2",
                  "--checkpoint-every", "1", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    assert result.code == 0, result.stderr
    grid = Image.open(next((tmp_path / "w" / "checkpoints").glob("step-*/validation.png")))
    assert grid.size == grid_size(["unguided", "CFG w=5", "DICE"], 2, 48)


def test_the_raw_exception_scan_catches_raw_text():
    """The battery's scan (conftest.no_raw_exception_text) flags what used to leak, and not dicecli's sentences."""
    from helpers import RAW_EXCEPTION

    assert RAW_EXCEPTION.search("error: IndexError: index 3 is out of bounds for axis 0 with size 3")
    assert RAW_EXCEPTION.search("error: ValueError: Overflow when unpacking long")
    assert not RAW_EXCEPTION.search("error: --seed -1 must be 0 or more (image i uses seed + i).")


@pytest.mark.reliability("seed or size")
@pytest.mark.parametrize("command", ["distill", "encode --images"])
def test_a_training_size_the_machine_cannot_hold_is_refused(dice, tmp_path, command, monkeypatch):
    from dicecli.loading import Components

    data = write_imagefolder(tmp_path / "d", ["a cat"])
    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"weights loaded: {wanted}"))
    if command == "distill":
        args = ["distill", "--model", "tiny-sd15", "--data", data, "--resolution", "16384", "--work-dir", tmp_path / "w",
                "-o", tmp_path / "e.safetensors"]
    else:
        args = ["encode", "--images", data, "--model", "tiny-sd15", "--resolution", "16384", "-o", tmp_path / "l.h5"]
    one_sentence(dice(*args), 2, "--resolution 16384 (16384x16384) needs at least")


@pytest.mark.reliability("damaged artifact")
def test_an_enhancer_whose_metadata_lacks_its_shape_is_refused(dice, prompts_file, enhancer_file, tmp_path):
    from safetensors import safe_open

    with safe_open(str(enhancer_file), framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != "context_dim"}
    broken = tmp_path / "broken.safetensors"
    save_file(load_file(str(enhancer_file)), str(broken), metadata=metadata)
    one_sentence(dice("sample", prompts_file, "--enhancer", broken, "-o", tmp_path / "s"), 1,
                 "has no valid context_dim in its metadata")


@pytest.mark.reliability("damaged artifact")
def test_a_cache_without_its_attributes_is_refused(dice, cache, tmp_path):
    with h5py.File(cache, "a") as f:
        del f.attrs["model"]
    one_sentence(dice("sample", cache, "--steps", "1", "-o", tmp_path / "s"), 1, "lacks the attributes model")


@pytest.mark.reliability("output onto an input")
def test_sample_refuses_an_output_onto_its_input_before_loading(dice, cache, tmp_path, monkeypatch):
    from dicecli.loading import Components

    monkeypatch.setattr(Components, "_load_pipeline", lambda self, wanted: pytest.fail(f"weights loaded: {wanted}"))
    one_sentence(dice("sample", cache, "--steps", "1", "-o", cache), 2, "would replace or write into the input")
    one_sentence(dice("sample", cache, "--steps", "1", "-o", "/dev/null"), 2, "not a regular folder")


@pytest.mark.reliability("output onto an input")
def test_distill_onto_its_negative_prompts_file(dice, tmp_path):
    data = write_imagefolder(tmp_path / "d", ["a cat", "a dog"])
    negatives = tmp_path / "neg.txt"
    negatives.write_text("blurry\nbad hands\n")
    result = dice("distill", "--model", "tiny-sd15", "--data", data, "--negative-prompts", negatives, "-o", negatives,
                  "--steps", "1", "--batch-size", "2", "--work-dir", tmp_path / "w")
    one_sentence(result, 2, "would replace or write into the input")
    assert negatives.read_text() == "blurry\nbad hands\n"


@pytest.mark.reliability("seed or size")
@pytest.mark.parametrize("command", ["sample", "enhance"])
def test_a_strength_that_overflows_is_refused(dice, prompts_file, enhancer_file, tmp_path, command):
    out = tmp_path / ("s" if command == "sample" else "e.h5")
    args = ["--steps", "1"] if command == "sample" else []
    for alpha in ("1e308", "1e30"):  # 1e30: finite numbers whose squares overflow, as every attention logit would
        one_sentence(dice(command, prompts_file, "--enhancer", enhancer_file, "--alpha", alpha, "-o", out, *args), 2,
                     f"--alpha {float(alpha):g} makes the enhanced embeddings overflow")
    assert not out.exists() or not any(out.iterdir())


def test_running_out_of_host_memory_is_one_sentence(dice, prompts_file, tmp_path, monkeypatch):
    import dicecli.sampling

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(dicecli.sampling, "generate", no_memory)
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "-o", tmp_path / "s")
    one_sentence(result, 1, "this machine ran out of memory; use a smaller --batch-size")


@pytest.mark.reliability("damaged artifact")
def test_nan_pixels_are_never_written_as_black_images(dice, prompts_file, enhancer_file, tmp_path, monkeypatch):
    """A model that produces NaN (here its VAE, as an fp16 VAE that overflows does): refused, not saved as black PNGs."""
    from diffusers import AutoencoderKL

    decode = AutoencoderKL.decode
    monkeypatch.setattr(AutoencoderKL, "decode", lambda self, z, *a, **k: decode(self, z * float("nan"), *a, **k))
    result = dice("sample", prompts_file, "--enhancer", enhancer_file, "--steps", "2", "-o", tmp_path / "s")
    monkeypatch.undo()
    one_sentence(result, 1, "The model produced NaN or infinite pixels (seeds 0..2)", "Nothing was written")
    assert not list((tmp_path / "s").glob("*.png"))
    rerun = dice("sample", prompts_file, "--enhancer", enhancer_file, "--steps", "2", "-o", tmp_path / "s")
    assert rerun.code == 0 and len(list((tmp_path / "s").glob("*.png"))) == 3  # the corrected rerun is not blocked
