"""Numbers and artifacts that used to be accepted silently: one sentence, exit 2, nothing written."""

import json

import pytest

pytestmark = pytest.mark.reliability("bad input")


@pytest.mark.parametrize("option, value, words", [
    ("--cfg", "nan", "--cfg nan must be a number of at least 1"),
    ("--cfg", "inf", "--cfg inf must be a number of at least 1"),
    ("--cfg", "0.5", "--cfg 0.5 must be a number of at least 1"),
    ("--height", "0", "--height 0 must be a positive multiple of 8"),
    ("--height", "30", "--height 30 must be a positive multiple of 8"),
    ("--width", "-8", "--width -8 must be a positive multiple of 8"),
    ("--steps", "0", "--steps 0 must be at least 1"),
])
def test_sample_refuses_bad_numbers(dice, prompts_file, tmp_path, option, value, words):
    result = dice("sample", prompts_file, "--model", "tiny-sd15", option, value, "-o", tmp_path / "s")
    assert result.code == 2 and words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_alpha_nan_is_refused_by_sample_and_enhance(dice, prompts_file, enhancer_file, tmp_path):
    result = dice("sample", prompts_file, "--enhancer", enhancer_file, "--alpha", "nan", "-o", tmp_path / "s")
    assert result.code == 2 and "--alpha nan must be a finite number" in result.stderr
    result = dice("enhance", prompts_file, "-o", tmp_path / "e.h5", "--enhancer", enhancer_file, "--alpha", "nan")
    assert result.code == 2 and "--alpha nan must be a finite number" in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "e.h5").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--guidance-scale", "nan", "--guidance-scale nan must be a positive number"),
    ("--lr", "-1", "--lr -1.0 must be a positive number"),
    ("--resolution", "30", "--resolution 30 must be a positive multiple of 8"),
    ("--ema", "1.5", "--ema 1.5 must be a decay in [0, 1)"),
    ("--warmup-steps", "99999", "--warmup-steps 99999 must be at least 0 and below --steps 8000"),
    ("--lr-schedule", "step", "--lr-schedule 'step' is not known; use one of constant, cosine, linear"),
    ("--timesteps", "beta", "--timesteps 'beta' is not known; use one of uniform, logit-normal"),
])
def test_distill_refuses_bad_numbers(dice, prompts_file, tmp_path, option, value, words):
    data = tmp_path / "data"
    from helpers import write_imagefolder

    write_imagefolder(data, ["a red cat", "a blue dog"])
    result = dice("distill", "--model", "tiny-sd15", "--data", data, option, value, "--work-dir", tmp_path / "w",
                  "-o", tmp_path / "e.safetensors")
    assert result.code == 2 and words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "e.safetensors").exists()


def test_recipe_value_of_the_wrong_type(dice, tmp_path, tiny_sd15_dir):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nfamily = "sd15"\n[source]\npath = "{tiny_sd15_dir}"\n[distill]\nsteps = "many"\n')
    result = dice("distill", "--model", recipe, "--data", tmp_path)
    assert result.code == 2 and "[distill] steps = 'many' must be a int" in result.stderr


def test_enhance_refuses_to_overwrite_its_input(dice, prompts_file, enhancer_file, tmp_path):
    cache = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15").code == 0
    before = cache.read_bytes()
    result = dice("enhance", cache, "-o", cache, "--enhancer", enhancer_file)
    assert result.code == 2 and "would replace or write into the input" in result.stderr
    assert cache.read_bytes() == before


def test_encode_does_not_append_to_an_enhanced_cache(dice, prompts_file, enhancer_file, tmp_path):
    enhanced = tmp_path / "e.h5"
    assert dice("enhance", prompts_file, "-o", enhanced, "--enhancer", enhancer_file).code == 0
    before = enhanced.read_bytes()
    more = tmp_path / "more.txt"
    more.write_text("a yellow bird\n")
    result = dice("encode", more, "-o", enhanced, "--model", "tiny-sd15")
    assert result.code == 2 and "enhanced with" in result.stderr
    assert enhanced.read_bytes() == before


def test_cache_of_another_width_is_refused_before_sampling(dice, prompts_file, tmp_path):
    cache = tmp_path / "xl.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sdxl").code == 0
    result = dice("sample", cache, "--model", "tiny-sd15", "-o", tmp_path / "s")
    assert result.code == 2 and "sdxl embeddings" in result.stderr and not (tmp_path / "s").exists()


def test_resume_with_other_data_is_refused(dice, tmp_path):
    from helpers import write_imagefolder

    a = write_imagefolder(tmp_path / "a", ["a red cat", "a blue dog"])
    b = write_imagefolder(tmp_path / "b", ["a green house", "a black car"], seed=2)
    common = ["distill", "--model", "tiny-sd15", "--batch-size", "2", "--no-validate", "--work-dir", tmp_path / "w",
              "-o", tmp_path / "e.safetensors"]
    assert dice(*common, "--data", a, "--steps", "1").code == 0
    result = dice(*common, "--data", b, "--steps", "2", "--resume")
    assert result.code == 2 and "--resume" in result.stderr and str(a) in result.stderr
    result = dice(*common, "--data", a, "--steps", "2", "--resume", "--resolution", "64")
    assert result.code == 2 and "resolution=32" in result.stderr


def test_stdout_into_a_closed_pipe_exits_quietly(tmp_path):
    """`dice encode ... -o - | head -c 10`: no traceback, no message; the reader chose to stop."""
    import subprocess
    import sys

    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt number {i} with some words\n" for i in range(300)))
    err = tmp_path / "err.txt"
    done = subprocess.run(
        f"'{sys.executable}' -m dicecli encode '{prompts}' -o - --model tiny-sd15 2>'{err}' | head -c 10 > /dev/null; "
        "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True, timeout=300)
    assert done.stdout.strip() in (b"1", b"0"), done
    assert err.read_text() == "", err.read_text()


def test_truncated_cache_on_stdin_leaves_no_spool_file(dice, prompts_file, enhancer_file, tmp_path, monkeypatch):
    import tempfile

    cache = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15").code == 0
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    truncated = cache.read_bytes()[:3000]
    for command in (["enhance", "-", "-o", tmp_path / "e.h5", "--enhancer", enhancer_file],
                    ["sample", "-", "-o", tmp_path / "s"]):
        result = dice(*command, input=truncated)
        assert result.code in (1, 2) and "Traceback" not in result.stderr, result.stderr
        assert not list(spool.iterdir()), command
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "s").exists()


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("table, line, part", [("sample", "steps = 2.5", "[sample] steps = 2.5 must be a int"),
                                               ("encode", "batch_size = true", "[encode] batch_size = True must be a int"),
                                               ("sample", "stepz = 20", "[sample] stepz is not a sample setting")])
def test_every_recipe_table_is_type_checked(dice, tmp_path, tiny_sd15_dir, prompts_file, table, line, part):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nfamily = "sd15"\n[source]\npath = "{tiny_sd15_dir}"\n[{table}]\n{line}\n')
    result = dice("sample", prompts_file, "--model", recipe, "-o", tmp_path / "s")
    assert result.code == 2 and part in result.stderr, result.stderr


# -- the wider battery: degenerate inputs, page links, the promises the README makes -----------------------------
def test_trigger_words_need_an_enhancement_to_match(dice, prompts_file, enhancer_file):
    """--alpha 0 makes c' = c: the relative distance would be noise over zero (it read 2.0e15)."""
    result = dice("trigger", enhancer_file, prompts_file, "--alpha", "0", "--iterations", "1")
    assert result.code == 2 and "equal the plain ones (--alpha 0 makes c' = c)" in result.stderr, result.stderr


def test_distinct_strengths_never_share_a_sweep_folder(dice, prompts_file, enhancer_file, tmp_path):
    result = dice("sample", prompts_file, "-e", enhancer_file, "--alpha", "1,1.0000001", "--steps", "1", "-o",
                  tmp_path / "sweep", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["folders"] == [str(tmp_path / "sweep" / "alpha-1"),
                                                    str(tmp_path / "sweep" / "alpha-1.0000001")]


def test_the_eval_page_links_folders_whose_names_need_escaping(dice, prompts_file, tmp_path):
    folder = tmp_path / "exp #3"
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "1", "-o", folder, "-q").code == 0
    assert dice("eval", folder, "--metrics", "toy", "-o", tmp_path / "report", "-q").code == 0
    page = (tmp_path / "report.html").read_text()
    assert 'href="exp%20%233/000000.png"' in page and 'href="exp #3/' not in page


def test_every_command_takes_quiet_and_json(dice, tmp_path):
    """The README's promise: `--quiet` for cron, `--json` for machines, on every command."""
    from typer.main import get_command

    from dicecli.cli import app

    group = get_command(app)
    commands = [(name, c) for name, c in group.commands.items() if not hasattr(c, "commands")]
    commands += [(f"comfyui {n}", c) for n, c in group.commands["comfyui"].commands.items()]
    lacking = [name for name, c in commands
               if not {"--quiet", "--json"} <= {o for p in c.params for o in p.opts}]
    assert not lacking and len(commands) == 12, lacking
    names = dice("recipes", "--quiet").stdout.split()
    assert "tiny-sd15" in names and "toy" in names and all(" " not in n for n in names)
