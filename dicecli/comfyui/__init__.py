"""DICE in ComfyUI: nodes that load an enhancer and enhance CONDITIONING, so that KSampler at cfg 1.0 gives DICE
images at one model evaluation per step (docs/comfyui.md). `dice comfyui install PATH` puts a two-line loader of
this package into a ComfyUI's custom_nodes/."""

from dicecli.comfyui.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_models_folder

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "register_models_folder"]
