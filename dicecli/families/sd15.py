"""SD1.5 and its fine-tunes: one CLIP ViT-L/14 text encoder (77 x 768), a UNet."""

from __future__ import annotations

import torch

from dicecli.families.base import Conditioning, FamilyAdapter, TextSpec, read_json
from dicecli.families.tiny import clip_byte_tokenizer, tiny_clip_config, tiny_vae


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

    def encode_prompt(self, pipe, prompts: list[str]) -> dict:
        embeds, _ = pipe.encode_prompt(prompts, self.device, num_images_per_prompt=1, do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds.to(self.dtype)}

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds, return_dict=False)[0]

    # -- the tiny random-weight model for tests and CI (`tiny-sd15`) ---------------------------------------
    tiny_version = 2  # bump when the builder changes, so stale copies are rebuilt

    @staticmethod
    def tiny_pipeline():
        """A miniature SD1.5 pipeline (`tiny-sd15`): a 32-wide CLIP encoder, a two-block UNet, SD1.5's scheduler config."""
        from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextModel

        tokenizer = clip_byte_tokenizer()
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(tiny_clip_config(tokenizer))
        with torch.no_grad():
            # Trained text encoders feed the UNet's cross-attention in a regime where the output moves
            # almost linearly with the embedding; unit-scale random outputs make the attention far
            # sharper. Scaling the final norm restores that regime, so CFG is distillable as in real SD.
            text_encoder.final_layer_norm.weight.mul_(0.2)
            text_encoder.final_layer_norm.bias.mul_(0.2)
        torch.manual_seed(1)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=16,
        )
        torch.manual_seed(2)
        vae = tiny_vae()
        # SD1.5's own scheduler config.
        scheduler = PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
        )
        return StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
