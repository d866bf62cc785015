"""Sampler names dicecli accepts (`--scheduler`) and the diffusers scheduler each one builds.

Kept free of torch so that the command line can list them without importing it.
"""

# name -> (diffusers scheduler class name, extra config); built from the model's own scheduler config
SCHEDULERS = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
