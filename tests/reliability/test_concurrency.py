"""Two runs on one artifact: appends take turns and lose nothing; samples and distillations refuse in one
sentence naming the lock; locks are OS locks that die with their process; files keep the user's umask."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from helpers import write_imagefolder

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY if os.path.isdir(sys.argv[1]) else os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(lock_path, seconds):
    """Another process holding the lock (as a running dice would)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path), str(seconds)], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"locked"
    return process


@pytest.mark.slow
@pytest.mark.reliability("concurrent runs")
def test_two_encodes_appending_to_one_cache_lose_nothing(dice, tmp_path):
    cache = tmp_path / "c.h5"
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("".join(f"prompt a{i}\n" for i in range(40)))
    second.write_text("".join(f"prompt b{i}\n" for i in range(40)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "dicecli", "encode", str(p), "-o", str(cache), "--model", "tiny-sd15",
                              "--batch-size", "4"], stderr=subprocess.PIPE, env=env) for p in (first, second)]
    codes = [run.wait(timeout=300) for run in runs]
    assert codes == [0, 0], [run.stderr.read().decode()[-500:] for run in runs]
    with h5py.File(cache) as f:
        prompts = [p.decode() for p in f["prompts"][:]]
        assert sorted(prompts) == sorted([f"prompt a{i}" for i in range(40)] + [f"prompt b{i}" for i in range(40)])
        assert f["prompt_embeds"].shape[0] == 80


@pytest.mark.reliability("concurrent runs")
def test_encode_waits_for_a_held_cache_lock_then_appends(dice, prompts_file, tmp_path):
    cache = tmp_path / "c.h5"
    holder = hold_lock(tmp_path / ".c.h5.lock", 3)
    start = time.time()
    result = dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15")
    holder.wait()
    assert result.code == 0 and "waiting" in result.stderr and time.time() - start >= 2.5


@pytest.mark.reliability("concurrent runs")
def test_second_sample_into_one_folder_refuses_naming_the_lock(dice, prompts_file, tmp_path):
    (tmp_path / "s").mkdir()
    holder = hold_lock(tmp_path / "s", 30)
    try:
        result = dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "2", "-o", tmp_path / "s")
    finally:
        holder.kill()
        holder.wait()
    assert result.code == 2 and "in use by another dice process" in result.stderr and str(tmp_path / "s") in result.stderr
    assert not any((tmp_path / "s").iterdir())
    # the lock died with its process: nothing to clean up
    assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "2", "-o", tmp_path / "s").code == 0


@pytest.mark.reliability("concurrent runs")
def test_second_distill_in_one_work_dir_refuses(dice, tmp_path):
    data = write_imagefolder(tmp_path / "data", ["a red cat", "a blue dog"])
    (tmp_path / "w").mkdir()
    holder = hold_lock(tmp_path / "w", 30)
    try:
        result = dice("distill", "--model", "tiny-sd15", "--data", data, "--steps", "1", "--batch-size", "2",
                      "--no-validate", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors")
    finally:
        holder.kill()
        holder.wait()
    assert result.code == 2 and "Work dir" in result.stderr and "lock on" in result.stderr
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_keep_the_users_umask(dice, prompts_file, tmp_path, umask):
    old = os.umask(umask)
    try:
        assert dice("encode", prompts_file, "-o", tmp_path / "c.h5", "--model", "tiny-sd15").code == 0
        assert dice("sample", prompts_file, "--model", "tiny-sd15", "--steps", "2", "-o", tmp_path / "s").code == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "c.h5", tmp_path / "s" / "000000.png", tmp_path / "s" / "metadata.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.slow
@pytest.mark.reliability("concurrent runs")
def test_sample_reads_a_complete_cache_while_an_encode_appends_to_it(dice, prompts_file, tmp_path):
    """The fifth overlap: `dice sample` of a cache that an `encode` is appending to sees one complete version
    (appends go to a copy renamed into place), never a half-written one; the append itself loses nothing.
    The append is held after its first batch (`DICE_FAULT=...:STOP`, dicecli/faults.py) while the sample runs."""
    import signal

    cache = tmp_path / "c.h5"
    assert dice("encode", prompts_file, "-o", cache, "--model", "tiny-sd15").code == 0
    more = tmp_path / "more.txt"
    more.write_text("".join(f"another prompt {i}\n" for i in range(20)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DICE_FAULT": "encode.batch@1:STOP"}
    append = subprocess.Popen([sys.executable, "-m", "dicecli", "encode", str(more), "-o", str(cache), "--model",
                               "tiny-sd15", "--batch-size", "2"], stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and Path(f"/proc/{append.pid}/stat").read_text().split(") ")[1][0] != "T":
            time.sleep(0.05)  # until it stops itself mid-append
        assert list(tmp_path.glob(".c.h5.*.tmp")), "the append should be half-way through its copy"
        sampled = dice("sample", cache, "--steps", "1", "-o", tmp_path / "s", "--json")
        assert sampled.code == 0, sampled.stderr
        assert json.loads(sampled.stdout)["generated"] == 3  # the version before the append
    finally:
        append.send_signal(signal.SIGCONT)
    assert append.wait(timeout=300) == 0, append.stderr.read().decode()[-500:]
    with h5py.File(cache) as f:
        assert f["prompts"].shape[0] == f["prompt_embeds"].shape[0] == 23
