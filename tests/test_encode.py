import json

import h5py
import numpy as np
import torch

from helpers import run_dice_process


def read_cache(path):
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        prompts = [p.decode() for p in f["prompts"][:]]
        return attrs, prompts, f["prompt_embeds"][:], f["eos_index"][:]


def test_encode_equals_diffusers_encode_prompt(dice, prompts_file, tiny_sd15_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "emb.h5"
    result = dice("encode", prompts_file, "-o", out, "--model", "tiny-sd15", "--batch-size", "2")
    assert result.code == 0, result.stderr
    attrs, prompts, embeds, eos = read_cache(out)
    assert prompts == ["a red cat", "a blue dog on a beach", "a green house"]

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15_dir, safety_checker=None)
    expected, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    assert embeds.shape == (3, 77, 32)
    np.testing.assert_allclose(embeds, expected.detach().numpy(), atol=1e-5, rtol=1e-5)

    ids = pipe.tokenizer(prompts, padding="max_length", max_length=77, truncation=True).input_ids
    assert list(eos) == [row.index(pipe.tokenizer.eos_token_id) for row in ids]


def test_cache_schema(dice, prompts_file, tmp_path):
    out = tmp_path / "emb.h5"
    assert dice("encode", prompts_file, "-o", out, "--model", "tiny-sd15", "--negative", "blurry").code == 0
    with h5py.File(out, "r") as f:
        attrs = dict(f.attrs)
        assert attrs["format"] == "dice-embeddings"
        assert attrs["format_version"] == 1
        assert attrs["family"] == "sd15"
        assert attrs["model"] == "tiny-sd15"
        assert attrs["model_resolved"].startswith("builtin:tiny-sd15")
        assert len(attrs["text_encoder_fingerprint"]) == 16
        assert attrs["dtype"] == "float32"
        for key in ("created", "dicecli_version"):
            assert attrs[key]
        assert f["prompt_embeds"].chunks is not None and f["prompt_embeds"].compression == "gzip"
        assert [p.decode() for p in f["negative_prompts"][:]] == ["blurry"]
        assert f["negative_prompt_embeds"].shape == (1, 77, 32)
        assert f["eos_index"].shape == (3,)


def test_append_encodes_only_new_prompts(dice, prompts_file, tmp_path):
    out = tmp_path / "emb.h5"
    first = dice("encode", prompts_file, "-o", out, "--model", "tiny-sd15", "--json")
    assert json.loads(first.stdout)["prompts_new"] == 3
    _, _, before, _ = read_cache(out)

    longer = tmp_path / "more.txt"
    longer.write_text(prompts_file.read_text() + "a purple boat\na red cat\n")
    second = dice("encode", longer, "-o", out, "--model", "tiny-sd15", "--json")
    summary = json.loads(second.stdout)
    assert (summary["prompts_new"], summary["prompts_total"]) == (1, 4)
    _, prompts, after, _ = read_cache(out)
    assert prompts[-1] == "a purple boat"
    np.testing.assert_array_equal(after[:3], before)

    stamp = out.stat().st_mtime_ns
    third = dice("encode", longer, "-o", out, "--model", "tiny-sd15", "--json")
    assert json.loads(third.stdout)["prompts_new"] == 0
    assert out.stat().st_mtime_ns == stamp  # nothing to do: file untouched


def test_inputs_jsonl_coco_and_stdin(dice, tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "one"}\n\n{"text": "two"}\n{"caption": "three"}\n')
    coco = tmp_path / "captions.json"
    coco.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1, "caption": "four "}, {"image_id": 2, "caption": "five"}]}))
    for source, expected in ((jsonl, ["one", "two", "three"]), (coco, ["four", "five"])):
        out = tmp_path / f"{source.stem}.h5"
        assert dice("encode", source, "-o", out, "--model", "tiny-sd15").code == 0
        assert read_cache(out)[1] == expected
    out = tmp_path / "stdin.h5"
    assert dice("encode", "-", "-o", out, "--model", "tiny-sd15", input="six\n\nseven\n").code == 0
    assert read_cache(out)[1] == ["six", "seven"]


def test_truncation_warns_once_with_count(dice, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("short\n" + "x" * 200 + "\n" + "y" * 300 + "\n")
    result = dice("encode", path, "-o", tmp_path / "e.h5", "--model", "tiny-sd15")
    assert result.code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 2 of 3 prompts are longer than 77 tokens and were truncated."]


def test_quiet_prints_nothing(dice, prompts_file, tmp_path):
    result = dice("encode", prompts_file, "-o", tmp_path / "e.h5", "--model", "tiny-sd15", "--quiet")
    assert result.code == 0 and result.stderr == "" and result.stdout == ""


def test_stdout_output_is_a_cache(prompts_file, tmp_path, tiny_sd15_dir):
    done = run_dice_process("encode", prompts_file, "-o", "-", "--model", "tiny-sd15")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout[:8] == b"\x89HDF\r\n\x1a\n"
    path = tmp_path / "piped.h5"
    path.write_bytes(done.stdout)
    assert read_cache(path)[1] == ["a red cat", "a blue dog on a beach", "a green house"]
    assert b"encoded" in done.stderr  # the summary goes to stderr, never into the data


def test_local_folder_and_recipe_file_references(dice, prompts_file, tiny_sd15_dir, tmp_path):
    by_folder = tmp_path / "folder.h5"
    assert dice("encode", prompts_file, "-o", by_folder, "--model", tiny_sd15_dir).code == 0
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'family = "sd15"\n[source]\npath = "{tiny_sd15_dir}"\n[encode]\nbatch_size = 1\n')
    by_recipe = tmp_path / "recipe.h5"
    assert dice("encode", prompts_file, "-o", by_recipe, "--model", recipe).code == 0
    np.testing.assert_array_equal(read_cache(by_folder)[2], read_cache(by_recipe)[2])
    with h5py.File(by_folder) as a, h5py.File(by_recipe) as b:
        assert a.attrs["text_encoder_fingerprint"] == b.attrs["text_encoder_fingerprint"]


def test_fingerprint_independent_of_dtype(tiny_sd15_dir):
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model

    ref = resolve_model("tiny-sd15")
    fp32 = load_adapter(ref, torch.device("cpu"), torch.float32).text_encoder_fingerprint()
    bf16 = load_adapter(ref, torch.device("cpu"), torch.bfloat16).text_encoder_fingerprint()
    assert fp32 == bf16
