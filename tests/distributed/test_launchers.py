"""Every stage under torchrun / accelerate launch (CPU, gloo) gives what one process gives: the same PNGs, cache
datasets and attributes, metrics and reports (docs/distributed.md). A failing rank stops the job with one sentence;
a rank that dies without a word is noticed at the next meeting point; a rerun finishes the missing work only.

Every process runs with one CPU thread (torchrun's default), the one-process references too: CPU kernels may
round differently with another thread count, GPUs do not depend on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import OUTPUTS, random_enhancer_file, write_imagefolder

pytestmark = pytest.mark.slow
PROMPTS = [f"prompt number {i}, a {colour} thing" for i, colour in zip(range(37), ["red", "blue", "green"] * 13)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def one_process(*args, cwd=None, **env) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dicecli", *map(str, args)], capture_output=True, timeout=300,
                          env=environment(**env), cwd=cwd)
    OUTPUTS.append(done.stderr.decode(errors="replace"))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done


def launch_command(args, launcher: str = "torchrun", nproc: int = 2, port: int | None = None) -> list[str]:
    port = port or free_port()
    if launcher == "accelerate":
        head = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port)]
    return [*head, "-m", "dicecli", *map(str, args)]


def launch(*args, launcher: str = "torchrun", ok: bool = True, cwd=None, **env) -> subprocess.CompletedProcess:
    done = subprocess.run(launch_command(args, launcher), capture_output=True, timeout=300, env=environment(**env),
                          cwd=cwd)
    if ok:
        assert done.returncode == 0, dice_lines(done) or done.stderr.decode()[-3000:]
    return done


def dice_lines(done) -> list[str]:
    """dice's own `error:` lines (the launchers add their summaries around them)."""
    return [line for line in done.stderr.decode(errors="replace").splitlines() if line.startswith("error:")]


def same_cache(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        assert sorted(x) == sorted(y)
        for name in x:
            assert np.array_equal(x[name][:], y[name][:]), name
        attrs = lambda f: {k: v for k, v in f.attrs.items() if k != "created"}  # noqa: E731
        assert json.dumps(attrs(x), default=str) == json.dumps(attrs(y), default=str)


def same_folder(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())  # no per-rank leftovers
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_sd15_dir):
    folder = tmp_path_factory.mktemp("distributed")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    enhancer = random_enhancer_file(folder / "enhancer.safetensors", guidance_scale=5.0)
    cache = folder / "one.h5"
    one_process("encode", prompts, "-m", "tiny-sd15", "-o", cache, "--batch-size", "4")
    one_process("enhance", cache, "-e", enhancer, "-o", folder / "enhanced-one.h5", "--batch-size", "4")
    # 37 prompts x 2 images in batches of 3: 25 batches, uneven over 2 ranks, one prompt split across batches
    one_process(*SAMPLE, "-o", folder / "s1", cwd=folder)
    return folder, prompts, enhancer, cache


SAMPLE = ["sample", "enhanced-one.h5", "--steps", "2", "--batch-size", "3", "--num-per-prompt", "2"]


def test_encode_enhance_sample_under_torchrun_equal_one_process(inputs):
    folder, prompts, enhancer, cache = inputs
    launch("encode", prompts, "-m", "tiny-sd15", "-o", folder / "two.h5", "--batch-size", "4")
    same_cache(cache, folder / "two.h5")
    assert not list(folder.glob(".*.parts"))

    launch("enhance", cache, "-e", enhancer, "-o", folder / "enhanced-two.h5", "--batch-size", "4")
    same_cache(folder / "enhanced-one.h5", folder / "enhanced-two.h5")

    done = launch(*SAMPLE, "-o", folder / "s2", "--json", cwd=folder)
    assert json.loads(done.stdout)["generated"] == 74  # one summary, the main process's, counting every rank
    same_folder(folder / "s1", folder / "s2")


def test_latents_eval_and_fid_stats_under_accelerate_launch_equal_one_process(inputs, tmp_path, tiny_clip_dir,
                                                                              tiny_aesthetic_weights):
    data = write_imagefolder(tmp_path / "data", PROMPTS[:21], size=(40, 40))
    common = ["-m", "tiny-sd15", "--images", data, "--resolution", "32", "--batch-size", "2"]
    one_process("encode", *common, "-o", tmp_path / "latents-one.h5")
    launch("encode", *common, "-o", tmp_path / "latents-two.h5", launcher="accelerate")
    same_cache(tmp_path / "latents-one.h5", tmp_path / "latents-two.h5")

    one_process("fid-stats", data, "-o", tmp_path / "one.npz", "--fid-features", "tiny-random")
    launch("fid-stats", data, "-o", tmp_path / "two.npz", "--fid-features", "tiny-random", launcher="accelerate")
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "two.npz") as two:
        assert np.array_equal(one["mu"], two["mu"]) and np.array_equal(one["sigma"], two["sigma"])

    # 150 images: three feature runs of 64, dealt 2 + 1, so the features are gathered across ranks
    many = write_imagefolder(tmp_path / "many", [f"image {i}" for i in range(150)], size=(24, 24), seed=3)
    metrics = ["--metrics", "fid,clip,aesthetic", "--ref", data, "--fid-features", "tiny-random", "--clip-model",
               tiny_clip_dir, "--aesthetic-clip", tiny_clip_dir, "--aesthetic-weights", tiny_aesthetic_weights,
               "--format", "json"]
    single = one_process("eval", many, data, *metrics, "-o", tmp_path / "report-one")
    double = launch("eval", many, data, *metrics, "-o", tmp_path / "report-two", launcher="accelerate")
    rows = lambda out: [{k: v for k, v in row.items()} for row in json.loads(out)["rows"]]  # noqa: E731
    assert rows(single.stdout) == rows(double.stdout)
    assert json.loads((tmp_path / "report-two.json").read_text())["rows"] == rows(single.stdout)


def test_transfer_under_torchrun_equals_one_process(inputs, tmp_path, other_sd15_dir):
    folder, prompts, enhancer, _ = inputs
    five = tmp_path / "five.txt"
    five.write_text("\n".join(PROMPTS[:5]) + "\n")
    args = ["transfer", enhancer, five, "--to", "tiny-sd15", "--to", other_sd15_dir, "--steps", "2",
            "--batch-size", "2"]
    one_process(*args, "-o", tmp_path / "one")
    launch(*args, "-o", tmp_path / "two")
    for one in sorted(p for p in (tmp_path / "one").rglob("*") if p.is_file()):
        two = tmp_path / "two" / one.relative_to(tmp_path / "one")
        assert two.read_bytes() == one.read_bytes(), one
    assert not [p for p in (tmp_path / "two").rglob(".metadata-rank*")]


def test_two_nodes_sample_the_same_images(inputs, tmp_path):
    """Two torchrun launches with --nnodes 2 and a localhost rendezvous stand in for two nodes."""
    folder, _, _, _ = inputs
    options = [*SAMPLE, "-o", tmp_path / "s"]
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                               "-m", "dicecli", *map(str, options)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(), cwd=folder)
             for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err.decode()[-3000:]
    same_folder(folder / "s1", tmp_path / "s")


def test_a_failing_rank_stops_the_job_with_one_sentence_and_a_rerun_completes_it(inputs, tmp_path):
    folder, _, _, _ = inputs
    options = [*SAMPLE, "-o", tmp_path / "s"]
    failed = launch(*options, ok=False, cwd=folder, DICE_FAULT="sample.batch@2:ENOSPC", DICE_FAULT_RANK="1")
    assert failed.returncode != 0
    lines = dice_lines(failed)
    assert len(lines) == 1 and lines[0].startswith("error: rank 1 of 2 on ") and "no space left" in lines[0], lines
    assert "rank 1 of 2 on" in failed.stderr.decode().split("Root Cause")[1]  # the launcher names it as the cause
    kept = len(list((tmp_path / "s").glob("*.png")))
    assert 0 < kept < 74
    done = launch(*options, "--json", cwd=folder)
    assert 0 < json.loads(done.stdout)["skipped"] <= kept  # images listed before the failure are kept
    same_folder(folder / "s1", tmp_path / "s")


def test_a_killed_rank_loses_only_its_part_and_the_rerun_does_only_the_missing_batches(inputs, tmp_path):
    """Rank 1 is held at its first batch while rank 0 finishes its share, then killed (as the OOM killer would)."""
    folder, prompts, _, cache = inputs
    out = tmp_path / "killed.h5"
    args = ["encode", prompts, "-m", "tiny-sd15", "-o", out, "--batch-size", "4"]  # 10 batches: 5 per rank
    job = subprocess.Popen(launch_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=environment(DICE_FAULT="encode.batch@1:STOP", DICE_FAULT_RANK="1"))
    part = tmp_path / f".{out.name}.parts" / "batches-0000000-0000005.h5"
    deadline = time.monotonic() + 120
    while not part.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert part.is_file(), "rank 0 did not finish its part"
    stopped = subprocess.run(["pgrep", "-f", "-P", str(job.pid), "dicecli"], capture_output=True, text=True).stdout.split()
    for pid in stopped:
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "T":
            os.kill(int(pid), signal.SIGKILL)
    job.communicate(timeout=120)
    assert job.returncode != 0 and not out.exists()
    # The rerun has 5 batches left: 3 + 2 per rank. Had it redone all 10 (5 + 5), the 4th batch would fail.
    launch(*args, DICE_FAULT="encode.batch@4:ENOSPC")
    same_cache(cache, out)
    assert not (tmp_path / f".{out.name}.parts").exists()


def test_a_rank_that_dies_without_a_word_is_named_after_the_timeout(inputs, tmp_path):
    """Across nodes no launcher stops the others: the next meeting point names the missing rank."""
    folder, _, _, _ = inputs
    options = ["sample", folder / "enhanced-one.h5", "--steps", "1", "--batch-size", "3", "-o", tmp_path / "s"]
    port = free_port()
    env = environment(DICE_FAULT="sample.batch@1:KILL", DICE_FAULT_RANK="1", DICE_DIST_TIMEOUT="8")
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                               "-m", "dicecli", *map(str, options)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for rank in (0, 1)]
    results = [node.communicate(timeout=300) for node in nodes]
    assert all(node.returncode != 0 for node in nodes)
    lines = [line for _, err in results for line in err.decode().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "rank 1 did not reach the end of sampling" in lines[0] and "within 8 s" in lines[0], lines


def test_standard_input_is_refused_under_a_launcher(inputs):
    folder, _, enhancer, cache = inputs
    done = launch("enhance", "-", "-e", enhancer, "-o", folder / "x.h5", ok=False)
    lines = dice_lines(done)
    assert done.returncode != 0 and len(lines) == 1 and "cannot be standard input or output" in lines[0], lines


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("rank, words", [
    ("2", "RANK=2 is not a rank of WORLD_SIZE=2 (0 to 1)"),  # refused before connecting
    ("1", "this rank could not meet rank 0 at 127.0.0.1:"),  # no rank 0 was started
    ("0", "this rank could not meet the other 1 rank at 127.0.0.1:"),  # the other rank was never started
])
def test_a_launch_set_by_hand_that_cannot_work_is_one_sentence(inputs, rank, words):
    """As under a Slurm script that exports the torch variables itself: no C++ stack frames, no raw store errors."""
    folder, _, _, _ = inputs
    env = environment(RANK=rank, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                      DICE_DIST_TIMEOUT="3")
    done = subprocess.run([sys.executable, "-m", "dicecli", *SAMPLE, "-o", folder / "never"], capture_output=True,
                          timeout=120, env=env, cwd=folder)
    err = done.stderr.decode()
    OUTPUTS.append(err)
    assert done.returncode == 2 and err.count("\n") == 1 and err.startswith(f"error: rank {rank} of 2: "), err
    assert words in err and "torchrun or accelerate launch" in err
    assert not (folder / "never").exists()


@pytest.mark.reliability("bad input")
@pytest.mark.parametrize("option", [["--alpha", "abc"], []])
def test_an_error_before_the_job_starts_is_said_once(inputs, option):
    """Every rank gets the same command line and environment, so the same error: rank 0 says it, once."""
    folder, _, enhancer, _ = inputs
    env = {} if option else {"DICE_DIST_TIMEOUT": "abc"}
    done = launch(*SAMPLE, "-e", enhancer, *option, "-o", folder / "never", ok=False, cwd=folder, **env)
    lines = dice_lines(done)
    words = "--alpha 'abc' must be a number" if option else "DICE_DIST_TIMEOUT='abc' is not a number of seconds"
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: rank 0 of 2: ") and words in lines[0], lines
