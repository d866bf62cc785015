"""Runs inside a real ComfyUI (the test in this folder starts it as a subprocess; never imported by dicecli).

    python comfy_run.py COMFYUI BASE_DIR WORKFLOW.json RESULT.json PROMPT

With ComfyUI's own start-up (arguments, extra model paths, custom nodes from BASE_DIR/custom_nodes), it
records which DICE nodes loaded and which enhancers they list, runs WORKFLOW (API format) through ComfyUI's
executor at cfg 1 and at cfg 5 while counting the rows the UNet evaluates, and with a damaged enhancer, and compares the DICE node's output on CLIP Text Encode's output
of PROMPT with dicecli's enhancement of the same embeddings.
"""

import asyncio
import copy
import json
import os
import sys

comfy_root, base, workflow_path, result_path, prompt = sys.argv[1:6]
sys.argv = ["main.py", "--cpu", "--base-directory", base]
sys.path.insert(0, comfy_root)
os.chdir(comfy_root)

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.cli_args  # noqa: E402,F401 - parses sys.argv above
import folder_paths  # noqa: E402
import torch  # noqa: E402
import utils.extra_config  # noqa: E402

extra = os.path.join(base, "extra_model_paths.yaml")
if os.path.exists(extra):
    utils.extra_config.load_extra_path_config(extra)

import execution  # noqa: E402
import nodes  # noqa: E402
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402

asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
result = {"nodes": sorted(n for n in nodes.NODE_CLASS_MAPPINGS if n.startswith("DICE")),
          "enhancers": folder_paths.get_filename_list("dice")}

rows = []
forward = UNetModel.forward


def counting(self, x, *args, **kwargs):
    rows.append(x.shape[0])
    return forward(self, x, *args, **kwargs)


UNetModel.forward = counting


class Server:  # what PromptExecutor asks of ComfyUI's server when no client watches
    client_id = None
    last_node_id = None
    last_prompt_id = None

    def send_sync(self, *args, **kwargs):
        pass


workflow = json.load(open(workflow_path))
sampler = next(k for k, v in workflow.items() if v["class_type"] == "KSampler")
loader_id = next(k for k, v in workflow.items() if v["class_type"] == "DICELoadEnhancer")
result["runs"] = {}
# cfg 1 and 5 with the workflow's enhancer; then a damaged enhancer, which the loader node must refuse
for name, cfg, enhancer_file in (("cfg1", 1.0, None), ("cfg5", 5.0, None), ("broken", 1.0, "broken.safetensors")):
    run = copy.deepcopy(workflow)
    run[sampler]["inputs"]["cfg"] = cfg
    if enhancer_file:
        run[loader_id]["inputs"]["enhancer_name"] = enhancer_file
    valid = asyncio.run(execution.validate_prompt(name, run, None))
    if not valid[0]:
        result["runs"][name] = {"error": valid[1], "details": valid[3]}
        continue
    rows.clear()
    executor = execution.PromptExecutor(Server())
    executor.execute(run, name, {}, valid[2])
    messages = [m for m in executor.status_messages if m[0] == "execution_error"]
    result["runs"][name] = {"success": executor.success, "rows": list(rows), "steps": run[sampler]["inputs"]["steps"],
                            "errors": [m[1].get("exception_message") for m in messages]}
result["images"] = sorted(os.listdir(folder_paths.get_output_directory()))

# The node on CLIP Text Encode's own output, against dicecli's enhancement of the same embeddings.
loader = next(v for v in workflow.values() if v["class_type"] == "CheckpointLoaderSimple")
enhancer_name = next(v for v in workflow.values() if v["class_type"] == "DICELoadEnhancer")["inputs"]["enhancer_name"]
_, clip, _ = nodes.CheckpointLoaderSimple().load_checkpoint(loader["inputs"]["ckpt_name"])
positive = nodes.CLIPTextEncode().encode(clip, prompt)[0]
(enhancer,) = nodes.NODE_CLASS_MAPPINGS["DICELoadEnhancer"]().load_enhancer(enhancer_name)
(enhanced,) = nodes.NODE_CLASS_MAPPINGS["DICEEnhanceConditioning"]().enhance(enhancer, clip, positive, 1.0, "all")

from dicecli.families import Conditioning  # noqa: E402
from dicecli.method import apply_enhancer  # noqa: E402

null = nodes.CLIPTextEncode().encode(clip, "")[0][0][0]
embeds = positive[0][0]
with torch.no_grad():
    expected = torch.cat([
        apply_enhancer(enhancer.module, Conditioning(chunk.float(), torch.zeros(1, dtype=torch.long)),
                       Conditioning(null.float(), torch.zeros(1, dtype=torch.long))).prompt_embeds
        for chunk in embeds.split(77, dim=1)], dim=1)
result["compare"] = {
    "shape": list(enhanced[0][0].shape), "max_abs_diff": (enhanced[0][0].float() - expected).abs().max().item(),
    "changed": (enhanced[0][0].float() - embeds.float()).abs().max().item(),
    "pooled_kept": bool(torch.equal(enhanced[0][1]["pooled_output"], positive[0][1]["pooled_output"])),
}
json.dump(result, open(result_path, "w"), indent=1)
