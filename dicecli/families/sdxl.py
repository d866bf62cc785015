"""SDXL: two CLIP text encoders (77 x (768 + 1280) = 77 x 2048, plus a pooled 1280 embedding),
a UNet conditioned on the pooled embedding and size/crop time ids."""

from __future__ import annotations

import torch

from dicecli.families.base import Conditioning, FamilyAdapter, TextSpec, read_json

class SDXLAdapter(FamilyAdapter):
    family = "sdxl"
    pipeline_class_name = "StableDiffusionXLPipeline"
    denoiser_name = "unet"
    attachable_pipelines = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
    encode_prompt_outputs = {"prompt_embeds": 0, "pooled_prompt_embeds": 2}
    comfyui_conditioning = True
    text_components = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
    all_components = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "unet", "vae", "scheduler",
                      "image_encoder", "feature_extractor")
    pipeline_components = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")
    checkpoint_key_prefix = "conditioner.embedders.1."
    single_file_config = "stabilityai/stable-diffusion-xl-base-1.0"
    single_file_text = TextSpec(tokens=77, width=2048, pooled_width=1280,
                                sections=(("text_encoder", 768), ("text_encoder_2", 1280)))
    single_file_size = 1024
    # The reference recipe for SDXL (paper and its public code): L2, 4,000 updates, 1024 px.
    defaults = {"distill": {"loss": "l2", "steps": 4000, "resolution": 1024}}

    @property
    def text(self) -> TextSpec:
        one, two = self.text_encoder.config.hidden_size, self.text_encoder_2.config.hidden_size
        return TextSpec(tokens=self.tokenizer.model_max_length, width=one + two,
                        pooled_width=self.text_encoder_2.config.projection_dim,
                        sections=(("text_encoder", one), ("text_encoder_2", two)))

    @classmethod
    def text_from_configs(cls, source) -> TextSpec:
        one, two = read_json(source, "text_encoder/config.json"), read_json(source, "text_encoder_2/config.json")
        tokenizer = read_json(source, "tokenizer/tokenizer_config.json")
        return TextSpec(tokens=int(tokenizer.get("model_max_length", 77)), width=int(one["hidden_size"]) + int(two["hidden_size"]),
                        pooled_width=int(two["projection_dim"]),
                        sections=(("text_encoder", int(one["hidden_size"])), ("text_encoder_2", int(two["hidden_size"]))))

    single_file_clip_layers = 12  # CLIP ViT-L (OpenCLIP bigG has 32)
    embedding_encoders = {"clip_l": ("tokenizer", "text_encoder"), "clip_g": ("tokenizer_2", "text_encoder_2")}
    lora_components = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "unet")

    @classmethod
    def clip_layers(cls, source) -> int:
        # SDXL already reads each encoder's penultimate layer; clip skip N reads N layers before the last.
        return min(int(read_json(source, f"{name}/config.json")["num_hidden_layers"]) for name in ("text_encoder", "text_encoder_2"))

    def encode_prompt(self, pipe, prompts: list[str]) -> dict:
        # Each encoder's penultimate hidden states (with clip skip, earlier ones), concatenated; the second encoder's
        # pooled output.
        embeds, _, pooled, _ = pipe.encode_prompt(prompts, device=self.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False,
                                                  clip_skip=self.encode_prompt_clip_skip())
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def unconditional(self, text: str | None) -> Conditioning:
        """No negative prompt: zeros when the model says so (`force_zeros_for_empty_prompt`, True for SDXL
        base), exactly as StableDiffusionXLPipeline; the enhancer still gets the encoded empty prompt."""
        null = self.null()
        if not text and self.components.pipeline_config.get("force_zeros_for_empty_prompt", True):
            return null.map(torch.zeros_like)
        return self.negative(text)

    def time_ids(self, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Size/crop conditioning for an uncropped image at the latents' size: (H, W, 0, 0, H, W),
        as the pipeline builds it with its default original/target size and crop."""
        height, width = latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor
        ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype, device=latents.device)
        return ids.repeat(latents.shape[0], 1)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        dtype = cond.prompt_embeds.dtype
        added = {"text_embeds": cond.pooled_prompt_embeds, "time_ids": self.time_ids(latents, dtype)}
        return self.unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds, added_cond_kwargs=added,
                         return_dict=False)[0]

    def pipeline_kwargs(self) -> dict:
        return {"force_zeros_for_empty_prompt": self.components.pipeline_config.get("force_zeros_for_empty_prompt", True)}

    def pipeline_inputs(self, cond: Conditioning, negative: Conditioning | None) -> dict:
        kwargs = super().pipeline_inputs(cond, negative)
        kwargs["pooled_prompt_embeds"] = cond.pooled_prompt_embeds.to(self.device, self.dtype)
        if negative is not None:
            kwargs["negative_pooled_prompt_embeds"] = negative.pooled_prompt_embeds.to(self.device, self.dtype)
        return kwargs
