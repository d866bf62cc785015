"""The ComfyUI nodes (classic node API). ComfyUI's own modules (`folder_paths`, `comfy.model_management`) are
imported inside the nodes' methods, which only ComfyUI calls, so `dicecli` imports without ComfyUI."""

from __future__ import annotations

import os

from dicecli.comfyui.conditioning import NodeError, end_positions, enhance, first_chunk, load
from dicecli.settings import ENHANCED_PARTS

FOLDER = "dice"  # models/dice/, and the key for extra_model_paths.yaml
CATEGORY = "conditioning/DICE"


def register_models_folder() -> None:
    """Make `models/dice/` (and any `dice:` paths of extra_model_paths.yaml, which ComfyUI reads before custom
    nodes load) the place ComfyUI lists enhancers from, `.safetensors` files only."""
    import folder_paths

    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)
    paths, _ = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, {".safetensors"})


class DICELoadEnhancer:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        register_models_folder()
        return {"required": {"enhancer_name": (folder_paths.get_filename_list(FOLDER),
                                               {"tooltip": "A DICE enhancer (.safetensors) from models/dice/."})}}

    RETURN_TYPES = ("DICE_ENHANCER",)
    RETURN_NAMES = ("enhancer",)
    FUNCTION = "load_enhancer"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads a DICE enhancer trained with `dice distill` for an SD1.5 or SDXL model."

    def load_enhancer(self, enhancer_name: str):
        import comfy.model_management
        import folder_paths

        path = folder_paths.get_full_path(FOLDER, enhancer_name)
        if path is None:
            raise NodeError(f"Enhancer {enhancer_name} is not in {', '.join(folder_paths.get_folder_paths(FOLDER))}; "
                            "put the .safetensors file there and refresh.")
        return (load(path, comfy.model_management.get_torch_device(), enhancer_name),)


class DICEEnhanceConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "enhancer": ("DICE_ENHANCER", {"tooltip": "From DICE Load Enhancer."}),
                "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP, to encode the empty prompt (DICE's null input)."}),
                "positive": ("CONDITIONING", {"tooltip": "The prompt's CLIP Text Encode output."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.05,
                                       "tooltip": "alpha in c' = c + alpha * E(c, c_neg); 1 is the enhancer as trained."}),
                "part": (list(ENHANCED_PARTS), {"default": "all",
                                                "tooltip": "Enhance every token, or only the prompt's words "
                                                           "(semantic) or only the padding after them."}),
            },
            "optional": {
                "negative": ("CONDITIONING", {"tooltip": "A negative prompt for the enhancer (its second input), "
                                                         "instead of the empty prompt; as `dice sample --negative`."}),
                "prompt_text": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "Only for part semantic/padding: the positive prompt's text, "
                                                      "to find where its words end."}),
            },
        }

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("positive",)
    FUNCTION = "enhance"
    CATEGORY = CATEGORY
    DESCRIPTION = ("DICE: enhances the positive conditioning so that KSampler at cfg 1.0 (one model evaluation per "
                   "step) gives CFG-like images.")

    def enhance(self, enhancer, clip, positive, strength, part, negative=None, prompt_text=""):
        if negative is not None:
            second = first_chunk(negative, "negative")
        else:
            second = clip.encode_from_tokens(clip.tokenize(""))[:1, :77]
        ends = None
        if part != "all" and prompt_text.strip():
            tokens = clip.tokenize(prompt_text)
            chunks = tokens["l"] if "l" in tokens else next(iter(tokens.values()))
            ends = end_positions(chunks, _end_token(clip))
        return (enhance(enhancer, positive, second, strength, part, ends),)


def _end_token(clip) -> int:
    """The CLIP tokenizer's end-of-text id (ComfyUI keeps each encoder's tokenizer as an attribute)."""
    for tokenizer in vars(clip.tokenizer).values():
        if isinstance(getattr(tokenizer, "end_token", None), int):
            return tokenizer.end_token
    return 49407  # CLIP's <|endoftext|>, the same in SD1.5's and SDXL's tokenizers


NODE_CLASS_MAPPINGS = {"DICELoadEnhancer": DICELoadEnhancer, "DICEEnhanceConditioning": DICEEnhanceConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"DICELoadEnhancer": "DICE Load Enhancer",
                              "DICEEnhanceConditioning": "DICE Enhance Conditioning"}
