"""What a newcomer runs into in the first hour (docs/reliability.md): binary output refused on a terminal, errors
that name the right thing, help texts without slips, the toy job's outputs ignored by git."""

import os
import pty
import subprocess
import sys
from pathlib import Path

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
    outputs = ["toy-dice.safetensors", "unguided/", "dice/", "dice-ref/", "cfg/", "dice-runs/", "samples/"]
    script = (ROOT / "examples" / "toy-job.sh").read_text()
    for name in ("toy-dice.safetensors", "unguided/", "dice/", "dice-ref/", "cfg/"):
        assert name in script  # the list above is the script's
    done = subprocess.run(["git", "check-ignore", *[o.rstrip("/") + ("/x" if o.endswith("/") else "") for o in outputs]],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert len(done.stdout.split()) == len(outputs), done.stdout
