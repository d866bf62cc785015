"""Bad input: one sentence naming the file/option and the fix, exit 1 or 2, no traceback, nothing lost."""

import hashlib

import pytest

pytestmark = pytest.mark.reliability("bad input")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_sentence(result, code, *needles):
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def existing_cache(dice, prompts_file, tmp_path):
    out = tmp_path / "emb.h5"
    assert dice("encode", prompts_file, "-o", out, "--model", "tiny-sd15").code == 0
    return out, sha(out)


def bad_file(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "name, content, needles",
    [
        ("empty.txt", b"", ["is empty"]),
        ("blank.txt", b"\n   \n\t\n", ["no prompts left after skipping blank lines"]),
        ("latin1.txt", "café au lait\n".encode("latin-1"), ["not UTF-8", "re-save it as UTF-8"]),
        ("bad.jsonl", b'{"prompt": "ok"}\n{"prompt": oops}\n', ["line 2", "not valid JSON"]),
        ("nofield.jsonl", b'{"prompt": "ok"}\n{"title": "x"}\n', ["line 2", "'prompt', 'text' or 'caption'"]),
        ("bad.json", b'{"annotations": [\n{"caption": "a"},\n]}', ["not valid JSON", "line 3"]),
        ("other.json", b'{"foo": 1}', ["neither a COCO captions file"]),
        ("prompts.csv", b"a,b\n", ["unknown type '.csv'"]),
        ("nul.txt", b"a red cat\na blue\x00 dog\n", ["NUL byte on line 2"]),
    ],
)
def test_bad_prompt_files(dice, tmp_path, existing_cache, name, content, needles):
    out, before = existing_cache
    path = bad_file(tmp_path, name, content)
    result = dice("encode", path, "-o", out, "--model", "tiny-sd15")
    assert_one_sentence(result, 2, str(path), *needles)
    assert sha(out) == before


def test_missing_input(dice, tmp_path, existing_cache):
    out, before = existing_cache
    result = dice("encode", tmp_path / "nope.txt", "-o", out, "--model", "tiny-sd15")
    assert_one_sentence(result, 2, "nope.txt", "does not exist")
    assert sha(out) == before


def test_empty_stdin(dice, tmp_path):
    result = dice("encode", "-", "-o", tmp_path / "x.h5", "--model", "tiny-sd15", input="")
    assert_one_sentence(result, 2, "standard input is empty")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_model(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "dreamshaper_v8")
    assert_one_sentence(result, 2, "'dreamshaper_v8'", "dice recipes")
    assert not (tmp_path / "x.h5").exists()


def test_hub_id_offline_not_cached(dice, prompts_file, tmp_path):
    from huggingface_hub import constants

    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "someone/some-model")
    assert_one_sentence(result, 2, "someone/some-model", "HF_HUB_OFFLINE", constants.HF_HUB_CACHE)


def test_hub_id_without_network_is_one_sentence_and_no_request(dice, prompts_file, tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE, but no network: no download is tried (the hub library would retry for half a minute)."""
    import socket

    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(socket.gaierror(-2, "no network")))
    requests = []
    real = huggingface_hub.file_download.hf_hub_download

    def recording(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            requests.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", recording)
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "someone/some-model")
    assert_one_sentence(result, 2, "someone/some-model", "huggingface.co cannot be reached", "hf download")
    assert not requests


def test_recipe_hub_model_offline(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "dreamshaper")
    assert_one_sentence(result, 2, "Lykon/DreamShaper", "HF_HUB_OFFLINE")


def test_single_file_recipe_without_checkpoint(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "dreamshaper-pixelart")
    assert_one_sentence(result, 2, "dreamshaperPixelart_v10.safetensors", "Civitai", "DICE_CHECKPOINTS_DIR")


def test_pickle_checkpoint_is_refused(dice, prompts_file, tmp_path):
    ckpt = bad_file(tmp_path, "model.ckpt", b"not even a pickle")
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", ckpt)
    assert_one_sentence(result, 2, "pickle", ".safetensors")


class PlantsAFile:
    """Unpickling this runs code: it would create the file `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.reliability("security case")
@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_malicious_pickle_model_never_runs(dice, prompts_file, tmp_path, suffix):
    import pickle

    marker = tmp_path / "pwned"
    model = bad_file(tmp_path, f"model{suffix}", pickle.dumps({"state_dict": PlantsAFile(marker)}))
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", model)
    assert_one_sentence(result, 2, "pickle", ".safetensors")
    assert not marker.exists()


@pytest.mark.reliability("security case")
@pytest.mark.parametrize("name", ["enhancer.safetensors", "enhancer.pt"])
def test_malicious_pickle_enhancer_never_runs(dice, prompts_file, tmp_path, name):
    import pickle

    marker = tmp_path / "pwned"
    enhancer = bad_file(tmp_path, name, pickle.dumps({"fc1.weight": PlantsAFile(marker)}))
    result = dice("sample", prompts_file, "--model", "tiny-sd15", "--enhancer", enhancer, "-o", tmp_path / "s")
    assert_one_sentence(result, 2, str(enhancer), ".safetensors")
    assert not marker.exists() and not (tmp_path / "s").exists()


def test_output_folder_missing_is_made_and_a_file_in_the_way_refused(dice, prompts_file, tmp_path):
    """The one -o rule (as `mkdir -p`); an output under a file is one sentence."""
    assert dice("encode", prompts_file, "-o", tmp_path / "no" / "such" / "x.h5", "--model", "tiny-sd15").code == 0
    assert (tmp_path / "no" / "such" / "x.h5").is_file()
    result = dice("encode", prompts_file, "-o", prompts_file / "x.h5", "--model", "tiny-sd15")
    assert_one_sentence(result, 2, "which is a file, not a folder", "-o")


def test_output_is_a_folder(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path, "--model", "tiny-sd15")
    assert_one_sentence(result, 2, "is a folder")


def test_output_exists_and_is_not_a_cache(dice, prompts_file, tmp_path):
    precious = bad_file(tmp_path, "precious.h5", b"my thesis")
    result = dice("encode", prompts_file, "-o", precious, "--model", "tiny-sd15")
    assert_one_sentence(result, 2, "not a dice embedding cache")
    assert precious.read_bytes() == b"my thesis"


def test_append_to_cache_of_another_model(dice, prompts_file, tmp_path, existing_cache, other_sd15_dir):
    out, before = existing_cache
    result = dice("encode", prompts_file, "-o", out, "--model", other_sd15_dir)
    assert_one_sentence(result, 2, "tiny-sd15", "text encoder differs", "-o")
    assert sha(out) == before
    assert not list(tmp_path.glob(".emb.h5.*.tmp"))  # no temporary left (the .lock file holds nothing)


def test_debug_shows_traceback(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "x.h5", "--model", "nobody-knows", "--debug")
    assert result.code == 2
    assert "Traceback" in result.stderr and "error: " in result.stderr


@pytest.mark.reliability("security case")
def test_prompts_never_steer_a_path(dice, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("../../escaped\n/etc/passwd-x\n..\\\\win\n")
    out = tmp_path / "deep" / "s"
    out.parent.mkdir()
    result = dice("sample", prompts, "--model", "tiny-sd15", "--steps", "1", "-o", out)
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "dice-sample.json",
                                                     "metadata.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "p.txt"]


@pytest.mark.reliability("security case")
def test_trust_remote_code_is_never_enabled():
    from pathlib import Path

    import dicecli

    sources = Path(dicecli.__file__).parent.rglob("*.py")
    assert not [p for p in sources if "trust_remote_code=True" in p.read_text().replace(" ", "")]
