"""The DICE nodes in a real ComfyUI (docs/comfyui.md, "Tests"): runs when DICE_COMFYUI names a ComfyUI checkout
(and DICE_COMFYUI_PYTHON, if set, a Python with ComfyUI's requirements and dicecli; default: this one); skipped
with that reason otherwise, as in CI. Nothing of ComfyUI is part of this repository.

On the CPU, at 64 x 64 px and 3 Euler steps, with a full-size SD1.5 single-file checkpoint of random weights built
here: ComfyUI loads the nodes from `dice comfyui install`, lists enhancers from models/dice/ and from
extra_model_paths.yaml, runs the example workflow through its own executor, evaluates the UNet once per step at
cfg 1 (twice at cfg 5), shows a damaged enhancer's sentence as the node's error, and the node's output equals
dicecli's enhancement of CLIP Text Encode's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import random_enhancer_file, run_dice

COMFYUI = os.environ.get("DICE_COMFYUI")
WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "comfyui" / "dice-sd15-workflow.json"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not COMFYUI, reason="set DICE_COMFYUI to a ComfyUI checkout to run the DICE nodes in it")]


@pytest.fixture(scope="module")
def comfy_result(tmp_path_factory):
    from sd15_checkpoint import write_sd15_checkpoint

    base = tmp_path_factory.mktemp("comfy-base")
    for folder in ("custom_nodes", "models/checkpoints", "input", "output"):
        (base / folder).mkdir(parents=True)
    assert run_dice("comfyui", "install", base, "--quiet").code == 0
    write_sd15_checkpoint(base / "models" / "checkpoints" / "sd15-random.safetensors")
    random_enhancer_file(base / "models" / "dice" / "sd15-dice.safetensors", width=768, scale=0.02)
    broken = random_enhancer_file(base / "models" / "dice" / "broken.safetensors", width=768)
    data = bytearray(broken.read_bytes())
    data[-4:] = b"\x00\x00\xc0\x7f"  # the last float32 weight becomes NaN
    broken.write_bytes(bytes(data))
    elsewhere = base / "shared-enhancers"
    elsewhere.mkdir()
    random_enhancer_file(elsewhere / "other.safetensors", width=768)
    (base / "extra_model_paths.yaml").write_text(f"dicecli_test:\n    base_path: {base}\n    dice: shared-enhancers\n")

    workflow = json.loads(WORKFLOW.read_text())
    workflow["1"]["inputs"]["ckpt_name"] = "sd15-random.safetensors"
    workflow["4"]["inputs"]["enhancer_name"] = "sd15-dice.safetensors"
    workflow["6"]["inputs"].update(width=64, height=64)
    workflow["7"]["inputs"].update(steps=3, sampler_name="euler", scheduler="normal")
    (base / "workflow.json").write_text(json.dumps(workflow))
    long_prompt = "a red fox in the snow, " + " ".join(["detailed"] * 90)  # two 77-token chunks
    python = os.environ.get("DICE_COMFYUI_PYTHON", sys.executable)
    done = subprocess.run([python, str(Path(__file__).with_name("comfy_run.py")), COMFYUI, str(base),
                           str(base / "workflow.json"), str(base / "result.json"), long_prompt],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((base / "result.json").read_text())


def test_comfyui_loads_the_nodes_and_lists_enhancers_from_both_folders(comfy_result):
    assert comfy_result["nodes"] == ["DICEEnhanceConditioning", "DICELoadEnhancer"]
    assert set(comfy_result["enhancers"]) == {"broken.safetensors", "other.safetensors", "sd15-dice.safetensors"}


def test_the_workflow_runs_with_one_evaluation_per_step_at_cfg_1(comfy_result):
    one, five = comfy_result["runs"]["cfg1"], comfy_result["runs"]["cfg5"]
    assert one["success"] and five["success"], comfy_result["runs"]
    assert one["rows"] == [1] * one["steps"]  # the unconditional pass is skipped: one UNet row per step
    assert sum(five["rows"]) == 2 * five["steps"]  # CFG: both branches (ComfyUI batches them in one call)
    assert comfy_result["images"] == ["dice_00001_.png", "dice_00002_.png"]


def test_a_damaged_enhancer_is_the_nodes_one_sentence(comfy_result):
    broken = comfy_result["runs"]["broken"]
    assert not broken["success"]
    (message,) = broken["errors"]
    assert "NaN or infinite weights" in message and "\n" not in message.strip()


def test_the_node_equals_dicecli_on_clip_text_encodes_output(comfy_result):
    compare = comfy_result["compare"]
    assert compare["shape"] == [1, 154, 768]  # the long prompt's two chunks, each enhanced as its own sequence
    assert compare["max_abs_diff"] < 1e-5
    assert compare["changed"] > 1e-3  # the enhancer did change the conditioning
    assert compare["pooled_kept"]
