"""On a GPU: `dicecli.attach` under the ways people fit pipelines on small cards
(docs/python.md, "Offloading, dtypes and copies"). Every case samples the same prompts and seeds as the reference (attach, then
`.to("cuda")`) and reports whether it ran and how far its pixels are from the reference's. One JSON line a case.

    python3 benchmarks/api_offload.py FAMILY ENHANCER   # FAMILY: sd15 or sdxl (tiny-FAMILY, random weights)
"""

import copy
import json
import sys

import numpy as np
import torch

import dicecli

PROMPTS = ["a red cat on a sofa", "a blue house by the sea"]


def sample(pipe, cfg):
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(len(PROMPTS))]
    images = pipe(PROMPTS, guidance_scale=cfg, num_inference_steps=4, generator=generators,
                  negative_prompt=["blurry"] * len(PROMPTS),
                  output_type="np").images
    return np.asarray(images)


def fresh(model, dtype="fp32"):
    pipe = dicecli.load_pipeline(model, device="cpu", dtype=dtype)
    dicecli.set_scheduler(pipe, "dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(family: str, enhancer: str) -> None:
    model = f"tiny-{family}"

    def reference(pipe):
        dicecli.attach(pipe, enhancer)
        return pipe.to("cuda")

    def then(*steps):
        def build(pipe):
            for step in steps:
                pipe = step(pipe) or pipe
            return pipe
        return build

    attach = lambda p: dicecli.attach(p, enhancer) and None  # noqa: E731
    to_cuda = lambda p: p.to("cuda")  # noqa: E731
    cases = {
        "attach, then .to(cuda)": reference,
        ".to(cuda), then attach": then(to_cuda, attach),
        "enable_model_cpu_offload, then attach": then(lambda p: p.enable_model_cpu_offload(), attach),
        "attach, then enable_model_cpu_offload": then(attach, lambda p: p.enable_model_cpu_offload()),
        "enable_sequential_cpu_offload, then attach": then(lambda p: p.enable_sequential_cpu_offload(), attach),
        "attach, then enable_sequential_cpu_offload": then(attach, lambda p: p.enable_sequential_cpu_offload()),
        "attach, .to(cuda), then a deep copy": then(reference, copy.deepcopy),
        "attach, then torch.compile(unet)": then(reference, lambda p: setattr(p, "unet", torch.compile(p.unet))),
    }
    for cfg in (1.0, 3.0):
        base = sample(cases["attach, then .to(cuda)"](fresh(model)), cfg)
        for name, build in cases.items():
            row = {"family": family, "case": name, "cfg": cfg, "gpu": torch.cuda.get_device_name()}
            try:
                images = sample(build(fresh(model)), cfg)
                row |= {"ok": True, "max_abs_diff_255": round(float(np.abs(images - base).max()) * 255, 3)}
            except Exception as error:  # noqa: BLE001 - the record says what failed
                row |= {"ok": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
            print(json.dumps(row), flush=True)
    # fp16 on the GPU: random weights amplify fp16 rounding, so only that it runs and stays finite is recorded
    pipe = fresh(model, "fp16")
    dicecli.attach(pipe, enhancer)
    half = sample(pipe.to("cuda"), 1.0)
    print(json.dumps({"family": family, "case": "fp16, attach, then .to(cuda)", "cfg": 1.0, "ok": bool(np.isfinite(half).all()),
                      "gpu": torch.cuda.get_device_name()}), flush=True)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
