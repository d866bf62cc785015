"""What a newcomer runs into in the first hour (docs/reliability.md): binary output refused on a terminal, errors
that name the right thing, help texts without slips, the toy job's outputs ignored by git."""

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("command", ["encode", "enhance"])
def test_a_cache_to_standard_output_on_a_terminal_is_refused(command, prompts_file, enhancer_file, tmp_path):
    """As tools refuse to print binary to a terminal: exit 2, one sentence, nothing but it on the terminal."""
    primary, secondary = pty.openpty()
    extra = ["--model", "tiny-sd15"] if command == "encode" else ["--enhancer", str(enhancer_file)]
    done = subprocess.run([sys.executable, "-m", "dicecli", command, str(prompts_file), "-o", "-", *extra],
                          stdout=secondary, stderr=subprocess.PIPE, timeout=300, env=os.environ.copy())
    os.close(secondary)
    os.set_blocking(primary, False)
    try:
        shown = os.read(primary, 4096)
    except (BlockingIOError, OSError):
        shown = b""
    os.close(primary)
    assert done.returncode == 2 and b"standard output, which is a terminal here" in done.stderr, done.stderr
    assert shown == b""  # no HDF5 bytes on the terminal


@pytest.mark.reliability("bad input")
def test_eval_of_a_file_says_it_is_a_file(dice, prompts_file):
    result = dice("eval", prompts_file, "--metrics", "toy")
    assert result.code == 2 and f"{prompts_file} is a file, not a folder of images" in result.stderr
    assert "does not exist" not in result.stderr


def test_usage_lines_have_no_doubled_brackets(dice):
    result = dice("sample", "--help")
    assert result.code == 0 and "[[INPUT]]" not in result.stdout and "[INPUT]" in result.stdout


def test_attention_shows_content_words_by_default():
    from dicecli.analysis.attention import default_words

    assert default_words("the cat sits on the mat at noon") == ["cat", "sits", "mat", "noon", "<end>", "<padding>"]


def test_the_toy_job_leaves_the_repository_clean():
    """Its outputs are written into the repository root; git ignores every one of them."""
    import re

    script = (ROOT / "examples" / "toy-job.sh").read_text()
    outputs = re.findall(r" -o (\S+)", script) + ["dice-runs/", "samples/"]  # distill's work dir, sample's default
    assert len(outputs) == 7, outputs
    done = subprocess.run(["git", "check-ignore", *[o.rstrip("/") + ("/x" if o.endswith("/") else "") for o in outputs]],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert len(done.stdout.split()) == len(outputs), done.stdout


COMMANDS = ["encode", "distill", "enhance", "sample", "transfer", "eval", "fid-stats", "inspect", "attention",
            "trigger", "recipes", "comfyui install"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_shows_every_option_whole_and_flags_without_a_type(dice, command, monkeypatch):
    """Typer's rich panels cut `--negative-prompts` to `--negative-prom…` and print `--quiet -q <bool>`."""
    from typer.main import get_command

    from dicecli.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    result = dice(*command.split(), "--help")
    assert result.code == 0 and "…" not in result.stdout and "<bool>" not in result.stdout, result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80
    group = get_command(app)
    for word in command.split():
        group = group.commands[word]
    flags = [name for p in group.params for name in p.opts if name.startswith("--")]
    assert flags and all(flag in result.stdout for flag in flags)


def test_usage_lines_read_as_shell_usage(dice):
    usages = {c: dice(*c.split(), "--help").stdout.splitlines()[0] for c in ("transfer", "inspect", "eval", "sample")}
    assert usages == {"transfer": "Usage: dice transfer [OPTIONS] ENHANCER... INPUT",
                      "inspect": "Usage: dice inspect [OPTIONS] ENHANCER INPUT",
                      "eval": "Usage: dice eval [OPTIONS] FOLDER...", "sample": "Usage: dice sample [OPTIONS] [INPUT]"}


def test_help_texts_say_what_the_command_does_with_the_option(dice):
    def option_help(command: str, option: str) -> str:
        text = " ".join(dice(command, "--help").stdout.split())
        return text.split(f" {option} ", 1)[1].split(" --", 1)[0]

    assert "cache" not in option_help("attention", "--model")  # attention takes a prompt, never a cache
    for command in ("inspect", "trigger"):  # neither samples with CFG
        assert "CFG" not in option_help(command, "--negative") and "second input" in option_help(command, "--negative")
    assert "offline" in option_help("eval", "--metrics") and "docs/toyworld.md" in option_help("eval", "--metrics")


def test_small_report_values_keep_two_significant_digits():
    from dicecli.reportpage import value_text

    assert [value_text(v) for v in (0.0015, 3e-5, 0.06, 207.123, 0.0, None, 3)] == \
        ["0.0015", "3e-05", "0.06", "207.12", "0.00", "–", "3"]


@pytest.mark.reliability("bad input")
def test_every_output_creates_its_missing_folders(dice, prompts_file, enhancer_file, tmp_path):
    """One -o rule, as `mkdir -p`: sample, encode, enhance, inspect and eval alike; a file in the way is refused."""
    base = tmp_path / "new" / "deeper"
    assert dice("encode", prompts_file, "--model", "tiny-sd15", "-o", base / "c.h5", "-q").code == 0
    assert dice("enhance", prompts_file, "-e", enhancer_file, "-o", base / "e" / "e.h5", "-q").code == 0
    assert dice("inspect", enhancer_file, prompts_file, "-o", base / "inspect" / "toy", "-q").code == 0
    assert dice("sample", base / "c.h5", "--steps", "1", "-o", base / "s", "-q").code == 0
    assert dice("eval", base / "s", "--metrics", "toy", "-o", base / "r" / "rep", "-q").code == 0
    assert all((base / p).is_file() for p in ("c.h5", "e/e.h5", "inspect/toy.json", "s/000000.png", "r/rep.md"))
    (tmp_path / "file").write_text("x")
    refused = dice("encode", prompts_file, "--model", "tiny-sd15", "-o", tmp_path / "file" / "sub" / "c.h5")
    assert refused.code == 2 and f"lies under {tmp_path / 'file'}, which is a file" in refused.stderr
    assert not (tmp_path / "file" / "sub").exists() and (tmp_path / "file").read_text() == "x"


@pytest.mark.reliability("bad input")
def test_a_settings_clash_names_the_setting_that_clashes(dice, prompts_file, tmp_path):
    common = [prompts_file, "--model", "tiny-sd15", "--steps", "1", "-o", tmp_path / "s", "-q"]
    assert dice("sample", *common).code == 0
    result = dice("sample", *common, "--cfg", "2")
    assert result.code != 0 and "cfg was 1.0 there, is 2.0 now" in result.stderr
    assert "seed was" not in result.stderr  # only what clashes


def test_curves_never_join_folders_of_different_prompts():
    from dicecli.evaluate import EvalReport, curve_lines

    def row(folder, alpha, prompts):
        return {"folder": folder, "model": "m", "method": "DICE", "enhancer": "e", "cfg": 1.0, "alpha": alpha,
                "steps": 20, "nfe": 20, "prompt_set": prompts}

    rows = [row("a0", 0.0, "p1"), row("a1", 1.0, "p1"), row("b0", 0.0, "p2"), row("b1", 1.0, "p2"), row("c", 2.0, "p3")]
    _, lines = curve_lines(EvalReport(rows, {}), "alpha")
    assert sorted([r["folder"] for r in line] for line in lines.values()) == [["a0", "a1"], ["b0", "b1"]]


def test_a_sweep_grid_names_its_prompts_and_strengths():
    from PIL import Image

    from dicecli.sampling import image_grid

    tiles = [[Image.new("RGB", (32, 32), (40 * i, 40 * j, 0)) for j in range(3)] for i in range(2)]
    grid = image_grid(tiles, ["unguided", "CFG w=5", "DICE"], ["a red cube", "a long prompt " * 8])
    left, top = grid.width - 3 * 32, grid.height - 2 * 32
    assert left == 128 and top == 2 * 12 + 2  # "unguided" wraps to two lines in a 32-pixel column
    pixels = np.asarray(grid)
    assert (pixels[top:top + 32, :left] < 128).any() and (pixels[:top, left:] < 128).any()  # text drawn in both strips
    assert (pixels[top + 32:, left + 64:] == (40, 80, 0)).all()  # the tiles sit right of and below the strips
