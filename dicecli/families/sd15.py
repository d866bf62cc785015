"""SD1.5 and its fine-tunes: one CLIP ViT-L/14 text encoder (77 x 768), a UNet."""

from __future__ import annotations

import torch

from dicecli.families.base import Conditioning, EncodedPrompts, FamilyAdapter


class SD15Adapter(FamilyAdapter):
    family = "sd15"
    pipeline_class_name = "StableDiffusionPipeline"
    denoiser_name = "unet"
    text_components = ("tokenizer", "text_encoder")
    all_components = ("tokenizer", "text_encoder", "unet", "vae", "scheduler", "safety_checker", "feature_extractor")

    pipeline_components = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
    single_file_shape = (768, 77)  # CLIP ViT-L/14

    def extra_load_kwargs(self) -> dict:
        return {"requires_safety_checker": False}

    def pipeline_extra_kwargs(self) -> dict:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    @property
    def tokens(self) -> int:
        return self.tokenizer.model_max_length

    @property
    def context_dim(self) -> int:
        return self.text_encoder.config.hidden_size

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> EncodedPrompts:
        # As StableDiffusionPipeline.encode_prompt (clip_skip=None): pad to max length, truncate.
        tokenizer, text_encoder = self.tokenizer, self.text_encoder
        inputs = tokenizer(prompts, padding="max_length", max_length=self.tokens, truncation=True, return_tensors="pt")
        lengths = [len(ids) for ids in tokenizer(prompts, truncation=False).input_ids]
        truncated = sum(n > self.tokens for n in lengths)
        input_ids = inputs.input_ids.to(self.device)
        attention_mask = None
        if getattr(text_encoder.config, "use_attention_mask", False):
            attention_mask = inputs.attention_mask.to(self.device)
        embeds = text_encoder(input_ids, attention_mask=attention_mask)[0]
        eos_index = (input_ids == tokenizer.eos_token_id).int().argmax(dim=1)
        return EncodedPrompts(Conditioning(embeds.to(self.dtype), eos_index.cpu()), truncated)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds, return_dict=False)[0]
