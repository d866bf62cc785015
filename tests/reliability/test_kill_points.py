"""Kill points: every command stopped (SIGKILL, and Ctrl-C's SIGINT) at named moments, deterministically.

Each case runs a command with `DICE_FAULT` (`dicecli/faults.py`) so that it stops itself at one point:
start-up, mid-batch, during a cache append or a checkpoint, just before a final rename (or, for the
full-disk cases, so that a write fails with ENOSPC there). Then:
  1. every artifact is the previous complete version, the new complete version, or (folders) a
     subset of the new version's complete files - never a partial file at a final path;
  2. the same command run again completes (`dice distill` with `--resume`, as docs/reliability.md says);
  3. its result equals an uninterrupted run's (caches' contents, PNG pixels, enhancer bytes).

Runs are forked from one warm process that has already imported torch and diffusers (a "zygote",
single-threaded so that forking is safe), so each costs a model load instead of a Python start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from helpers import write_imagefolder

pytestmark = pytest.mark.slow

ZYGOTE = r"""
import contextlib, io, json, os, signal, sys
import torch
torch.set_num_threads(1)
import diffusers, transformers  # noqa: F401  (the imports every run needs, paid once)
from dicecli.cli import main
import dicecli.encode, dicecli.enhance, dicecli.sample, dicecli.distill, dicecli.transfer, dicecli.evaluate  # noqa
import dicecli.analysis.embeddings, dicecli.analysis.attention, dicecli.analysis.triggers, dicecli.reportpage  # noqa
import tempfile
# Warm-up: a real command in this process imports what diffusers and transformers load lazily
# (single-threaded, so no thread pool exists to be lost by forking).
with tempfile.TemporaryDirectory() as warm:
    w = lambda name: os.path.join(warm, name)
    open(w("p.txt"), "w").write("warm up\nwarm up again\n")  # FID needs two images
    for argv in (["sample", w("p.txt"), "--model", "tiny-sdxl", "--steps", "1", "-o", w("xl")],
                 ["sample", w("p.txt"), "--model", "tiny-pixart", "--steps", "2", "-o", w("px")],
                 ["sample", w("p.txt"), "--model", "tiny-sd15", "--steps", "1", "-o", w("s")],
                 ["distill", "--model", "tiny-sd15", "--data", w("s"), "--steps", "1", "--batch-size", "1", "--no-validate",
                  "--work-dir", w("w"), "-o", w("e.safetensors")],
                 ["eval", w("s"), "--ref", w("s"), "--metrics", "fid", "--fid-features", "tiny-random"]):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # this process's stdout is the test's channel
                main(argv)
        except SystemExit as done:
            assert not done.code, (argv, done.code)
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                               (2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            os.dup2(os.open(name, mode, 0o644), fd)
        os.chdir(job["cwd"])
        # Ctrl-C as in a terminal: a shell starts background jobs (as CI may run us) with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.pop("DICE_FAULT", None)
        os.environ.update(job["env"])
        code = 0
        try:
            main(job["argv"])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                      "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
"""


class Zygote:
    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("DICE_FAULT", None)
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=env, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def run(self, cwd: Path, argv: list[str], fault: str | None = None) -> dict:
        job = {"cwd": str(cwd), "argv": [str(a) for a in argv], "env": {"DICE_FAULT": fault} if fault else {},
               "stdout": str(cwd / ".stdout"), "stderr": str(cwd / ".stderr")}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        result = json.loads(self.process.stdout.readline())
        result["stderr"] = (cwd / ".stderr").read_text()
        return result

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


# -- the commands (tiny-sd15; relative paths, so that runs in different folders write the same files) -----------
PROMPTS = [f"a photo of thing {i}" for i in range(5)]
COMMANDS = {
    "encode": ["encode", "prompts.txt", "-o", "out.h5", "--model", "tiny-sd15", "--batch-size", "2"],
    "encode-append": ["encode", "prompts.txt", "-o", "old.h5", "--model", "tiny-sd15", "--batch-size", "2"],
    "latents": ["encode", "--images", "images", "-o", "latents.h5", "--model", "tiny-sd15", "--resolution", "32",
                "--batch-size", "2"],
    "enhance": ["enhance", "prompts.txt", "-o", "enhanced.h5", "--enhancer", "enhancer.safetensors", "--batch-size", "2"],
    "sample": ["sample", "prompts.txt", "--model", "tiny-sd15", "--steps", "2", "--batch-size", "2", "-o", "samples"],
    "transfer": ["transfer", "enhancer.safetensors", "prompts.txt", "--to", "tiny-sd15", "--steps", "2", "--batch-size",
                 "2", "-o", "transfer"],
    "distill": ["distill", "--model", "tiny-sd15", "--data", "images", "--steps", "6", "--checkpoint-every", "2",
                "--batch-size", "2", "--no-validate", "--work-dir", "work", "-o", "trained.safetensors"],
    "eval": ["eval", "given", "--ref", "given", "--metrics", "fid", "--fid-features", "tiny-random", "-o", "report"],
    "sweep": ["sample", "prompts.txt", "--enhancer", "enhancer.safetensors", "--alpha", "0,1", "--steps", "2",
              "--batch-size", "2", "-o", "sweep"],
    "inspect": ["inspect", "enhancer.safetensors", "prompts.txt", "-o", "insp"],
    "pca": ["inspect", "enhancer.safetensors", "prompts.txt", "--pca", "-o", "pca"],
    "checkpoints": ["sample", "prompts.txt", "--enhancer", "run", "--steps", "2", "--batch-size", "2", "-o", "curve"],
    "attention": ["attention", "enhancer.safetensors", "a red cat", "--steps", "3", "-o", "maps.png"],
    "trigger": ["trigger", "enhancer.safetensors", "prompts.txt", "--length", "2", "--iterations", "2", "--top-k", "4",
                "-o", "trig"],
    "comfyui": ["comfyui", "install", "comfy"],
    # what SD users bring: a LoRA, a textual-inversion embedding and clip skip 2 (docs/commands.md)
    "habits-encode": ["encode", "prompts.txt", "-o", "habits.h5", "--model", "tiny-sd15", "--batch-size", "2",
                      "--embedding", "mytok.safetensors", "--clip-skip", "2", "--lora", "style.safetensors:0.5"],
    "habits-sample": ["sample", "prompts.txt", "--model", "tiny-sd15", "--steps", "2", "--batch-size", "2",
                      "--embedding", "mytok.safetensors", "--clip-skip", "2", "--lora", "style.safetensors:0.5",
                      "--negative", "mytok", "--cfg", "3", "-o", "habits"],
}
ARTIFACTS = {"encode": ["out.h5"], "encode-append": ["old.h5"], "latents": ["latents.h5"], "enhance": ["enhanced.h5"],
             "sample": ["samples"], "transfer": ["transfer"], "distill": ["trained.safetensors", "work"],
             "eval": ["report.json", "report.md", "report.csv", "report.html"], "sweep": ["sweep"],
             "inspect": ["insp.json", "insp.csv", "insp-positions.csv", "insp.png"], "attention": ["maps.png", "maps.png.json"],
             "pca": ["pca.json", "pca.csv", "pca-positions.csv", "pca.png", "pca-pca.png"], "checkpoints": ["curve"],
             "trigger": ["trig.json", "trig.txt"], "comfyui": ["comfy"], "habits-encode": ["habits.h5"],
             "habits-sample": ["habits"]}
RERUN_EXTRA = {"distill": ["--resume"]}  # a killed distillation continues from its checkpoint
WORK_DIRS = {"distill": "work"}
# The other families, at the points where they differ most: appending to a cache, sampling, checkpointing.
for family in ("sdxl", "pixart"):
    model = f"tiny-{family}"
    COMMANDS[f"{family}-encode-append"] = ["encode", "prompts.txt", "-o", f"old-{family}.h5", "--model", model,
                                           "--batch-size", "2"]
    COMMANDS[f"{family}-sample"] = ["sample", "prompts.txt", "--model", model, "--steps", "2", "--batch-size", "2",
                                    "-o", f"samples-{family}"]
    COMMANDS[f"{family}-distill"] = ["distill", "--model", model, "--data", "images", "--steps", "6",
                                     "--checkpoint-every", "2", "--batch-size", "2", "--no-validate", "--work-dir",
                                     f"work-{family}", "-o", f"trained-{family}.safetensors"]
    ARTIFACTS.update({f"{family}-encode-append": [f"old-{family}.h5"], f"{family}-sample": [f"samples-{family}"],
                      f"{family}-distill": [f"trained-{family}.safetensors", f"work-{family}"]})
    RERUN_EXTRA[f"{family}-distill"] = ["--resume"]
    WORK_DIRS[f"{family}-distill"] = f"work-{family}"

# (command, point, signal) on tiny-sd15: SIGKILL and SIGINT points
CASES = [
    ("encode", "start", "KILL"), ("encode", "encode.batch@2", "KILL"), ("encode", "write:out.h5", "KILL"),
    ("encode-append", "encode.batch@1", "KILL"), ("encode-append", "encode.batch@3", "KILL"),
    ("encode-append", "write:old.h5", "KILL"),
    ("latents", "latents.batch@1", "KILL"), ("latents", "write:latents.h5", "KILL"),
    ("enhance", "enhance.batch@2", "KILL"), ("enhance", "write:enhanced.h5", "KILL"),
    ("sample", "start", "KILL"), ("sample", "write:dice-sample.json", "KILL"), ("sample", "sample.batch@2", "KILL"),
    ("sample", "write:000003.png", "KILL"), ("sample", "write:metadata.jsonl@2", "KILL"),
    ("transfer", "sample.batch@4", "KILL"), ("transfer", "write:grid.png", "KILL"),
    ("transfer", "write:compatibility.json", "KILL"),
    ("distill", "distill.step@1", "KILL"), ("distill", "distill.step@3", "KILL"),
    ("distill", "write:step-0000004", "KILL"), ("distill", "write:trained.safetensors", "KILL"),
    ("eval", "start", "KILL"), ("eval", "write:report.json", "KILL"), ("eval", "write:report.md", "KILL"),
    ("eval", "write:report.csv", "KILL"),
    ("encode-append", "encode.batch@2", "INT"), ("latents", "write:latents.h5", "INT"),
    ("enhance", "write:enhanced.h5", "INT"), ("sample", "sample.batch@2", "INT"),
    ("transfer", "write:grid.png", "INT"), ("distill", "write:step-0000004", "INT"), ("eval", "write:report.md", "INT"),
    # the analyses and sweeps
    ("eval", "write:report.html", "KILL"), ("sweep", "sample.batch@4", "KILL"), ("sweep", "write:dice-sweep.json", "KILL"),
    ("sweep", "sample.batch@4", "INT"), ("inspect", "write:insp.png", "KILL"), ("attention", "write:maps.png", "KILL"),
    ("trigger", "write:trig.txt", "KILL"), ("pca", "write:pca-pca.png", "KILL"),
    ("checkpoints", "sample.batch@4", "KILL"), ("checkpoints", "write:dice-sweep.json", "KILL"),
    ("comfyui", "write:__init__.py", "KILL"),
    ("habits-encode", "encode.batch@2", "KILL"), ("habits-sample", "sample.batch@2", "KILL"),
]
FAMILY_CASES = [(f"{family}-{command}", point, "KILL") for family in ("sdxl", "pixart") for command, point in
                (("encode-append", "encode.batch@2"), ("sample", "sample.batch@2"), ("distill", "write:step-0000004"))]
# The disk fills up: writes fail with ENOSPC during a cache append, a PNG, a checkpoint and a report.
FULL_DISK = [("encode-append", "encode.batch@2", "ENOSPC"), ("sample", "write:000003.png", "ENOSPC"),
             ("distill", "write:step-0000004", "ENOSPC"), ("eval", "write:report.md", "ENOSPC")]


@pytest.fixture(scope="module")
def zygote(tiny_sd15_dir, offline_home):
    from dicecli.builtin import ensure_builtin

    ensure_builtin("tiny-sdxl"), ensure_builtin("tiny-pixart")  # built once, before any run forks
    process = Zygote()
    yield process
    process.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, enhancer_file) -> Path:
    """The inputs every case starts from: prompts, images, an enhancer, a sample folder to evaluate."""
    from helpers import run_dice

    folder = tmp_path_factory.mktemp("inputs")
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    write_imagefolder(folder / "images", [f"a picture of item {i}" for i in range(6)])
    shutil.copy(enhancer_file, folder / "enhancer.safetensors")
    (folder / "old.txt").write_text("an older prompt\nanother older prompt\n")
    (folder / "comfy" / "custom_nodes").mkdir(parents=True)  # a ComfyUI folder for `dice comfyui install`
    write_habits(folder)
    for model, cache in (("tiny-sd15", "old.h5"), ("tiny-sdxl", "old-sdxl.h5"), ("tiny-pixart", "old-pixart.h5")):
        assert run_dice("encode", folder / "old.txt", "-o", folder / cache, "--model", model).code == 0
    assert run_dice("sample", folder / "prompts.txt", "--model", "tiny-sd15", "--steps", "2", "-o", folder / "given").code == 0
    for step in (1, 2):  # a distill work dir of two checkpoints, for `dice sample --enhancer run`
        checkpoint = folder / "run" / "checkpoints" / f"step-{step:07d}"
        checkpoint.mkdir(parents=True)
        shutil.copy(enhancer_file, checkpoint / "enhancer.safetensors")
        (checkpoint / "trainer.json").write_text(json.dumps({"step": step}))
    return folder


def write_habits(folder: Path) -> None:
    """A random UNet LoRA (peft) and a two-vector textual-inversion embedding for tiny-sd15."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from dicecli.builtin import ensure_builtin

    pipe = StableDiffusionPipeline.from_pretrained(ensure_builtin("tiny-sd15"))
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_v"]))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                              weight_name="style.safetensors")
    save_file({"emb_params": torch.randn(2, 32) * 0.5}, str(folder / "mytok.safetensors"))


@pytest.fixture(scope="module")
def references(zygote, inputs, tmp_path_factory) -> dict[str, Path]:
    """Each command run once, uninterrupted, from the same inputs."""
    made = {}
    for name, argv in COMMANDS.items():
        folder = fresh_copy(inputs, tmp_path_factory.mktemp(f"reference-{name}"))
        result = zygote.run(folder, argv)
        assert result["code"] == 0, result["stderr"]
        made[name] = folder
    return made


def fresh_copy(inputs: Path, folder: Path) -> Path:
    shutil.copytree(inputs, folder, dirs_exist_ok=True)
    return folder


# -- comparing artifacts ----------------------------------------------------------------------------------------
VOLATILE_ATTRS = {"created"}
VOLATILE_FILES = {"train_log.jsonl", "trainer.json"}  # timings; the enhancer and optimizer state are compared


def cache_contents(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        data = {k: f[k][:] for k in f}
        attrs = {k: v for k, v in f.attrs.items() if k not in VOLATILE_ATTRS}
    return {"data": data, "attrs": attrs}


def same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".h5":
        x, y = cache_contents(a), cache_contents(b)
        return (x["attrs"].keys() == y["attrs"].keys() and all(np.array_equal(x["attrs"][k], y["attrs"][k]) for k in x["attrs"])
                and x["data"].keys() == y["data"].keys() and all(np.array_equal(x["data"][k], y["data"][k]) for k in x["data"]))
    if a.suffix == ".png":
        return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    return a.read_bytes() == b.read_bytes()


def visible_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.name not in VOLATILE_FILES)


def check_intact(path: Path, previous: Path, reference: Path) -> None:
    """A file: absent, the previous version or the new one. A folder: each complete file one of the new version's
    (a `metadata.jsonl` lists only images that are there); distillation checkpoints are complete."""
    if not path.exists():
        return
    if path.is_file():
        assert (previous.exists() and same_file(path, previous)) or same_file(path, reference), f"{path} is partial"
        return
    for name in visible_files(path):
        mine, theirs = path / name, reference / name
        if name.parts[0] == "checkpoints":  # a run keeps its last two; the killed run may hold an earlier one
            assert (path / name.parts[0] / name.parts[1] / "trainer.json").is_file(), f"{mine} is in an incomplete checkpoint"
            continue
        if name.name == "metadata.jsonl":
            lines = mine.read_text().splitlines()
            assert set(lines) <= set(theirs.read_text().splitlines()), f"{mine} lists images of another run"
            assert all((mine.parent / json.loads(line)["file_name"]).is_file() for line in lines), f"{mine} lists a missing image"
            continue
        assert theirs.exists() and same_file(mine, theirs), f"{mine} is partial or differs from an uninterrupted run"


def check_equal(path: Path, reference: Path) -> None:
    if path.is_file() or reference.is_file():
        assert path.is_file() and same_file(path, reference), f"{path} differs from an uninterrupted run"
        return
    mine, theirs = visible_files(path), visible_files(reference)
    if path.name.startswith("work"):  # only the final checkpoints must agree
        mine, theirs = [p for p in mine if "step-0000006" in str(p)], [p for p in theirs if "step-0000006" in str(p)]
    assert mine == theirs, f"{path}: {mine} != {theirs}"
    for name in mine:
        assert same_file(path / name, reference / name), f"{path / name} differs from an uninterrupted run"


@pytest.mark.parametrize("command, point, signal_name", [
    *(pytest.param(*case, id="-".join(case), marks=pytest.mark.reliability("kill points")) for case in CASES + FAMILY_CASES),
    *(pytest.param(*case, id="-".join(case), marks=pytest.mark.reliability("full-disk cases")) for case in FULL_DISK),
])
def test_kill_point(zygote, inputs, references, tmp_path, command, point, signal_name):
    folder = fresh_copy(inputs, tmp_path / "run")
    argv = COMMANDS[command]
    killed = zygote.run(folder, argv, fault=f"{point}:{signal_name}")
    last = (killed["stderr"].strip().splitlines() or [""])[-1]
    if signal_name == "KILL":
        assert killed["signal"] == signal.SIGKILL, f"the run was not stopped at {point}: {killed}"
    elif signal_name == "INT":  # Ctrl-C: one line, exit 130, no traceback
        assert killed["code"] == 130 and last == "Interrupted." and "Traceback" not in killed["stderr"], killed
    else:  # a full disk: one sentence that says what to do
        assert killed["code"] == 1 and last.startswith("error: no space left on the device") and "free some space" in last
        assert "Traceback" not in killed["stderr"], killed
    for artifact in ARTIFACTS[command]:
        check_intact(folder / artifact, inputs / artifact, references[command] / artifact)

    work = folder / WORK_DIRS[command] if command in WORK_DIRS else None
    if work and list((work / "checkpoints").glob("step-*")):
        again = zygote.run(folder, argv)  # the same command without --resume: refused, the work dir untouched
        assert again["code"] == 2 and "pass --resume" in again["stderr"], again
    rerun = zygote.run(folder, argv + RERUN_EXTRA.get(command, []))
    assert rerun["code"] == 0, rerun["stderr"]
    if work:  # the log holds each step once, whatever was logged before the kill
        steps = [json.loads(line)["step"] for line in (work / "train_log.jsonl").read_text().splitlines()]
        assert steps == list(range(1, 7)), steps
    if (command, point) == ("sample", "sample.batch@2"):  # the first batch was complete: it is kept, not redone
        # Ctrl-C (or a full disk) also keeps the second batch, whose files were being written: a kill cannot
        kept = 2 if signal_name == "KILL" else 4
        assert f"{5 - kept} images generated, {kept} already there" in rerun["stderr"], rerun["stderr"]
    for artifact in ARTIFACTS[command]:
        check_equal(folder / artifact, references[command] / artifact)
    leftovers = [p for p in folder.rglob("*.tmp") if "checkpoints" not in p.parts]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_the_battery_has_the_promised_size():
    kills = [c for c in CASES + FAMILY_CASES if c[2] == "KILL"]
    assert len(kills) >= 20 and len([c for c in CASES if c[2] == "INT"]) >= 5 and len(FULL_DISK) >= 3
    assert {c[0] for c in CASES} >= {"encode", "latents", "enhance", "sample", "transfer", "distill", "eval"}
