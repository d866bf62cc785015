"""SD1.5 and its fine-tunes: one CLIP ViT-L/14 text encoder (77 x 768), a UNet."""

from __future__ import annotations

import torch

from dicecli.families.base import Conditioning, FamilyAdapter, TextSpec, read_json


class SD15Adapter(FamilyAdapter):
    family = "sd15"
    pipeline_class_name = "StableDiffusionPipeline"
    denoiser_name = "unet"
    attachable_pipelines = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
    encode_prompt_outputs = {"prompt_embeds": 0}
    comfyui_conditioning = True
    text_components = ("tokenizer", "text_encoder")
    all_components = ("tokenizer", "text_encoder", "unet", "vae", "scheduler", "safety_checker", "feature_extractor")
    pipeline_components = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
    checkpoint_key_prefix = "cond_stage_model.transformer."
    single_file_config = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    single_file_text = TextSpec(tokens=77, width=768)  # CLIP ViT-L/14
    single_file_size = 512
    # The reference recipe for SD1.5 variants (paper and its public code); recipes repeat it.
    defaults = {"distill": {"loss": "l1", "steps": 8000, "resolution": 512}}
    load_kwargs = {"requires_safety_checker": False}  # the safety checker is never loaded

    @property
    def text(self) -> TextSpec:
        return TextSpec(tokens=self.tokenizer.model_max_length, width=self.text_encoder.config.hidden_size)

    @classmethod
    def text_from_configs(cls, source) -> TextSpec:
        encoder = read_json(source, "text_encoder/config.json")
        tokenizer = read_json(source, "tokenizer/tokenizer_config.json")
        return TextSpec(tokens=int(tokenizer.get("model_max_length", 77)), width=int(encoder["hidden_size"]))

    def pipeline_kwargs(self) -> dict:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    single_file_clip_layers = 12  # CLIP ViT-L/14
    embedding_encoders = {"emb_params": ("tokenizer", "text_encoder")}
    lora_components = ("tokenizer", "text_encoder", "unet")

    @classmethod
    def clip_layers(cls, source) -> int:
        return int(read_json(source, "text_encoder/config.json")["num_hidden_layers"])

    def encode_prompt(self, pipe, prompts: list[str]) -> dict:
        if self.clip_skip != 1:
            expose_text_model(pipe.text_encoder)
        embeds, _ = pipe.encode_prompt(prompts, self.device, num_images_per_prompt=1, do_classifier_free_guidance=False,
                                       clip_skip=self.encode_prompt_clip_skip())
        return {"prompt_embeds": embeds.to(self.dtype)}

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds, return_dict=False)[0]


def expose_text_model(text_encoder) -> None:
    """StableDiffusionPipeline.encode_prompt with `clip_skip` applies `text_encoder.text_model.final_layer_norm`
    (diffusers 0.42.1), but transformers 5 laid CLIPTextModel out flat (its final_layer_norm is its own child), so
    that attribute is missing. Point it at the model itself: a plain attribute, not a registered submodule, so
    weights, state_dict and saving are untouched."""
    if not hasattr(text_encoder, "text_model") and hasattr(text_encoder, "final_layer_norm"):
        object.__setattr__(text_encoder, "text_model", text_encoder)
