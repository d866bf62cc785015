"""Every benchmark script runs, on the tiny models on this CPU: a refactor cannot break one unseen (the numbers
they print on a GPU are recorded in benchmarks/results/; no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.slow


def run(script: str, *args) -> list[dict]:
    done = subprocess.run([sys.executable, script, *map(str, args)], cwd=BENCHMARKS, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{") and line.endswith("}")]


@pytest.mark.parametrize("arch, text", [("tiny-sd15", "cached"), ("tiny-pixart", "per-step")])
def test_distill_throughput(tmp_path, arch, text):
    [row] = run("distill_throughput.py", tmp_path, "--arch", arch, "--steps", "4", "--batch", "4", "--text", text)
    assert row["arch"] == arch and row["text"] == text and row["images_per_s"] > 0


def test_sampling_throughput(tmp_path):
    rows = run("sampling_throughput.py", tmp_path, "--arch", "tiny-sdxl", "--batch", "2", "--repeats", "1",
               "--batches", "1", "--no-compile")
    assert len(rows) == 8 and all(r.get("images_per_s", 1) > 0 for r in rows)  # diffusers w=5, w=1, dice, ...


def test_cache_check_cost(tmp_path):
    run("cache_check_cost.py", "--prompts", "300", "--width", "32", "--repeats", "1", "--out", tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())


def test_pixart_mask_choice(tmp_path):
    run("pixart_mask_choice.py", "--steps", "2", "--seeds", "0", "--out", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())
