import csv
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_sd15_dir):
    """Two sample folders (unguided and CFG) and a reference folder, from tiny-sd15."""
    from helpers import run_dice

    root = tmp_path_factory.mktemp("eval")
    prompts = root / "p.txt"
    prompts.write_text("a red cat\na blue dog\na green house\na yellow car\n")
    made = {}
    for name, cfg in (("unguided", "1"), ("cfg", "5"), ("ref", "3")):
        assert run_dice("sample", prompts, "--model", "tiny-sd15", "--cfg", cfg, "--steps", "4", "-o", root / name,
                        "--num-per-prompt", "2").code == 0
        made[name] = root / name
    return made


def eval_args(tiny_clip_dir, tiny_aesthetic_weights):
    return ["--clip-model", tiny_clip_dir, "--aesthetic-clip", tiny_clip_dir, "--aesthetic-weights", tiny_aesthetic_weights,
            "--fid-features", "tiny-random"]


def test_eval_table_json_csv(dice, folders, tiny_clip_dir, tiny_aesthetic_weights, tmp_path):
    report = tmp_path / "report"
    result = dice("eval", folders["unguided"], folders["cfg"], "--ref", folders["ref"], "-o", report,
                  *eval_args(tiny_clip_dir, tiny_aesthetic_weights))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| folder | model | method | cfg | steps | NFE | FID ↓ | CLIP ↑ | AS ↑ | images |"
    assert lines[2].startswith(f"| {folders['unguided']} | tiny-sd15 | unguided | 1.00 | 4 | 4 |")
    assert lines[3].startswith(f"| {folders['cfg']} | tiny-sd15 | CFG | 5.00 | 4 | 8 |")
    data = json.loads((tmp_path / "report.json").read_text())
    rows = data["rows"]
    assert [r["nfe"] for r in rows] == [4, 8] and all(r["images"] == 8 for r in rows)
    assert all(r["fid"] >= 0 and 0 <= r["clip"] <= 100 and np.isfinite(r["aesthetic"]) for r in rows)
    assert data["settings"]["fid_features"] == "tiny-random"
    table = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert float(table[1]["fid"]) == pytest.approx(rows[1]["fid"])
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith(result.stdout) and "Note: FID over fewer than 1,000 images" in markdown


def test_fid_is_zero_against_itself_and_stats_file_agrees(dice, folders, tmp_path):
    from PIL import Image

    other = tmp_path / "flat"  # a plain image folder (no metadata): flat colours, far from the samples
    other.mkdir()
    for i in range(8):
        Image.new("RGB", (32, 32), (30 * i, 255 - 30 * i, 128)).save(other / f"{i}.png")
    stats = tmp_path / "ref.npz"
    assert dice("fid-stats", folders["ref"], "-o", stats, "--fid-features", "tiny-random").code == 0
    by_folder = dice("eval", other, folders["ref"], "--ref", folders["ref"], "--metrics", "fid",
                     "--fid-features", "tiny-random", "--format", "json")
    by_stats = dice("eval", other, folders["ref"], "--ref", stats, "--metrics", "fid",
                    "--fid-features", "tiny-random", "--format", "json")
    a, b = json.loads(by_folder.stdout)["rows"], json.loads(by_stats.stdout)["rows"]
    assert a[1]["fid"] == pytest.approx(0, abs=1e-6)
    assert a[0]["fid"] > 1e-2 and a[0]["method"] == "reference"
    assert a[0]["fid"] == pytest.approx(b[0]["fid"], rel=1e-6)


def test_stats_of_other_features_are_refused(dice, folders, tmp_path):
    stats = tmp_path / "ref.npz"
    assert dice("fid-stats", folders["ref"], "-o", stats, "--fid-features", "tiny-random").code == 0
    result = dice("eval", folders["cfg"], "--ref", stats, "--metrics", "fid", "--fid-features", "inception")
    assert result.code == 2 and "computed with tiny-random features" in result.stderr


def test_nfe_plot_for_several_step_counts(dice, folders, tiny_clip_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    runs = []
    for steps in ("2", "4", "6"):
        out = tmp_path / f"s{steps}"
        assert dice("sample", prompts, "--model", "tiny-sd15", "--steps", steps, "-o", out).code == 0
        runs.append(out)
    result = dice("eval", *runs, "--metrics", "clip", "--clip-model", tiny_clip_dir, "-o", tmp_path / "r")
    assert result.code == 0, result.stderr
    from PIL import Image

    assert Image.open(tmp_path / "r-nfe.png").size[0] > 200
    assert json.loads((tmp_path / "r.json").read_text())["plots"] == {"nfe": str(tmp_path / "r-nfe.png")}


def test_missing_models_say_how_to_get_them(dice, folders, tmp_path):
    result = dice("eval", folders["cfg"], "--metrics", "clip")
    assert result.code == 2 and "laion/CLIP-ViT-g-14-laion2B-s12B-b42K" in result.stderr and "hf download" in result.stderr
    result = dice("eval", folders["cfg"], "--metrics", "aesthetic", "--aesthetic-weights", tmp_path / "none.pth")
    assert result.code == 2 and "sac+logos+ava1-l14-linearMSE.pth" in result.stderr
    result = dice("eval", folders["cfg"], "--metrics", "aesthetic", "--aesthetic-weights", "someone/aesthetic:model.pth")
    assert result.code == 2 and "someone/aesthetic" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    result = dice("eval", folders["cfg"], "--metrics", "fid")
    assert result.code == 2 and "--ref" in result.stderr
    assert "Traceback" not in result.stderr


def test_aesthetic_weights_are_never_unpickled_as_code(dice, folders, tiny_clip_dir, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"layers.0.weight": Evil()}))
    result = dice("eval", folders["cfg"], "--metrics", "aesthetic", "--aesthetic-weights", bad, "--aesthetic-clip", tiny_clip_dir)
    assert result.code == 2 and "not a plain state dict" in result.stderr and "owned" not in result.stdout


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("bad", ["truncated", "not-an-image", "missing"])
def test_unreadable_image_gets_one_sentence(dice, folders, tmp_path, bad):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(folders["cfg"], folder)
    target = folder / "000001.png"
    if bad == "truncated":
        target.write_bytes(target.read_bytes()[:60])
    elif bad == "not-an-image":
        target.write_text("hello")
    else:
        target.unlink()
    for args in (["eval", folder, "--metrics", "fid", "--ref", folders["ref"], "--fid-features", "tiny-random",
                  "-o", tmp_path / "report"],
                 ["fid-stats", folder, "-o", tmp_path / "stats.npz", "--fid-features", "tiny-random"]):
        result = dice(*args)
        assert result.code == 2 and "000001.png cannot be read" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("report*")) and not (tmp_path / "stats.npz").exists()


@pytest.mark.reliability("bad input")
def test_fid_of_a_single_image_is_one_sentence(dice, tmp_path, tiny_sd15_dir):
    one = tmp_path / "one"
    assert dice("sample", "-", "--model", "tiny-sd15", "--steps", "1", "-o", one, input="a red cat\n").code == 0
    result = dice("eval", one, "--ref", one, "--metrics", "fid", "--fid-features", "tiny-random")
    assert result.code == 2 and "FID needs at least 2 images, but" in result.stderr and "has 1" in result.stderr


@pytest.mark.reliability("bad input")
def test_folders_of_other_sizes_or_models_get_a_note(dice, folders, tmp_path, other_sd15_dir, tiny_clip_dir):
    big = tmp_path / "big"
    assert dice("sample", "-", "--model", other_sd15_dir, "--steps", "1", "--height", "64", "--width", "64", "-o", big,
                input="a red cat\na blue dog\n").code == 0
    result = dice("eval", folders["cfg"], big, "--metrics", "fid", "--ref", folders["ref"], "--fid-features", "tiny-random")
    assert result.code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 3 and "different sizes" in notes[0] and "64x64" in notes[0] and "different models" in notes[1]
    alike = dice("eval", folders["cfg"], folders["unguided"], "--metrics", "clip", "--clip-model", tiny_clip_dir)
    assert alike.code == 0 and "note:" not in alike.stderr


def test_fid_over_few_images_says_so(dice, folders):
    result = dice("eval", folders["cfg"], folders["unguided"], "--metrics", "fid", "--ref", folders["ref"],
                  "--fid-features", "tiny-random", "--format", "json")
    assert result.code == 0, result.stderr
    note = f"note: FID over fewer than 1,000 images is mostly estimation bias and noise: {folders['cfg']} (8), {folders['unguided']} (8)"
    assert note in result.stderr
    assert json.loads(result.stdout)["notes"][0].startswith("FID over fewer than 1,000 images")


def test_two_dice_folders_are_told_apart_in_every_format(dice, folders, enhancer_file, tmp_path):
    """Two enhancers sampled on the same prompts: each row names its folder and its enhancer."""
    import shutil

    second = tmp_path / "second-enh.safetensors"
    shutil.copy(enhancer_file, second)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    for name, enhancer in (("a", enhancer_file), ("b", second)):
        assert dice("sample", prompts, "--enhancer", enhancer, "--steps", "2", "-o", tmp_path / name).code == 0
    args = ["eval", tmp_path / "a", tmp_path / "b", "--metrics", "fid", "--ref", folders["ref"], "--fid-features", "tiny-random"]
    table = dice(*args).stdout.splitlines()
    assert table[0].startswith("| folder | model | method | enhancer |")
    assert table[2].startswith(f"| {tmp_path / 'a'} | tiny-sd15 | DICE | tiny-enh.safetensors |")
    assert table[3].startswith(f"| {tmp_path / 'b'} | tiny-sd15 | DICE | second-enh.safetensors |")
    rows = json.loads(dice(*args, "--format", "json").stdout)["rows"]
    assert [(r["folder"], r["enhancer"]) for r in rows] == [(str(tmp_path / "a"), "tiny-enh.safetensors"),
                                                            (str(tmp_path / "b"), "second-enh.safetensors")]
    csv_rows = list(csv.DictReader(dice(*args, "--format", "csv").stdout.splitlines()))
    assert [(r["folder"], r["enhancer"]) for r in csv_rows] == [(str(tmp_path / "a"), "tiny-enh.safetensors"),
                                                                (str(tmp_path / "b"), "second-enh.safetensors")]


@pytest.mark.reliability("bad input")
def test_toy_metric_on_images_of_another_model_says_so(dice, folders):
    result = dice("eval", folders["cfg"], "--metrics", "toy", "--format", "json")
    assert result.code == 0, result.stderr
    assert "note: --metrics toy scores toy-world images" in result.stderr and "images of tiny-sd15" in result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert [n.split(" ", 3)[:3] for n in notes] == [["FID", "over", "fewer"], ["--metrics", "toy", "scores"]]
    assert all(f"note: {n}" in result.stderr for n in notes)  # toy FID has real FID's small-folder note
