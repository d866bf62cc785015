"""PixArt-alpha: a T5-XXL text encoder (120 tokens x 4096, with an attention mask) and a DiT
(`PixArtTransformer2DModel`) that predicts noise and a learned variance."""

from __future__ import annotations

import torch

from dicecli.families.base import Conditioning, FamilyAdapter, TextSpec, read_json

MAX_SEQUENCE_LENGTH = 120  # PixArtAlphaPipeline's max_sequence_length (the PixArt-alpha paper, section 3.1)
BINNED_SAMPLE_SIZES = (32, 64, 128)  # transformers the pipeline snaps sizes to aspect-ratio bins for
CONDITIONED_SAMPLE_SIZE = 128  # the 1024 models take resolution and aspect ratio as extra conditions

# How the enhancer meets T5 (docs/models.md, "The mask decision, measured"; measured by benchmarks/pixart_mask_choice.py): T5 has
# no start-of-text token, so the first token is a word of the prompt and the enhancer may change it
# (keeping it measured the same); and the enhanced embedding goes to the transformer under the prompt's
# own attention mask. Widening the mask to all 120 tokens, so that enhanced padding tokens are seen, cut the
# held-out guidance error less (to 35 % of unguided instead of 32 % on tiny-pixart, two seeds) and shows
# the transformer padding tokens it never attended to in training.
TEXT = dict(tokens=MAX_SEQUENCE_LENGTH, keep_first_token=False, mask=True, enhanced_mask="prompt")


class PixArtAdapter(FamilyAdapter):
    family = "pixart"
    pipeline_class_name = "PixArtAlphaPipeline"
    denoiser_name = "transformer"
    attachable_pipelines = ("PixArtAlphaPipeline",)
    encode_prompt_outputs = {"prompt_embeds": 0, "attention_mask": 1}
    text_components = ("tokenizer", "text_encoder")
    all_components = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")
    pipeline_components = all_components
    # PixArt checkpoints are shared as diffusers folders; the original .pth files hold the transformer only.
    checkpoint_key_prefix = None
    single_file_config = None
    single_file_text = None
    # The reference recipe has no public PixArt script; dicecli uses the SDXL one (docs/models.md, "Recipes, settings and numbers").
    defaults = {"distill": {"loss": "l2", "steps": 4000, "resolution": 512}}
    min_sampling_steps = 2
    min_sampling_steps_reason = ("PixArtAlphaPipeline treats a single step as a one-step distilled model's "
                                 "(it reads a second scheduler output that multistep schedulers do not give)")

    @property
    def text(self) -> TextSpec:
        return TextSpec(width=self.text_encoder.config.d_model, **TEXT)

    @classmethod
    def text_from_configs(cls, source) -> TextSpec:
        return TextSpec(width=int(read_json(source, "text_encoder/config.json")["d_model"]), **TEXT)

    max_sequence_length = MAX_SEQUENCE_LENGTH

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        # As PixArtAlphaPipeline's text preprocessing with clean_caption=False. (clean_caption=True needs
        # beautifulsoup4 and ftfy, and rewrites prompts; dicecli never does.)
        return [p.lower().strip() for p in prompts]

    def encode_prompt(self, pipe, prompts: list[str]) -> dict:
        # T5's last hidden state under the prompt's attention mask, padded to 120 tokens.
        embeds, mask, _, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                clean_caption=False, max_sequence_length=MAX_SEQUENCE_LENGTH)
        return {"prompt_embeds": embeds, "attention_mask": mask}

    def micro_conditions(self, latents: torch.Tensor, dtype: torch.dtype) -> dict:
        """The transformer's added conditions, as PixArtAlphaPipeline builds them: the image's resolution and
        aspect ratio for the 1024 models (sample size 128), none otherwise."""
        if self.denoiser.config.sample_size != CONDITIONED_SAMPLE_SIZE:
            return {"resolution": None, "aspect_ratio": None}
        height, width = latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor
        n = latents.shape[0]
        resolution = torch.tensor([[height, width]]).repeat(n, 1).to(dtype=dtype, device=latents.device)
        aspect_ratio = torch.tensor([[float(height / width)]]).repeat(n, 1).to(dtype=dtype, device=latents.device)
        return {"resolution": resolution, "aspect_ratio": aspect_ratio}

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The noise prediction. The transformer also predicts a variance (the second half of its channels),
        which the pipeline drops after CFG; CFG is linear per channel, so dropping it first is the same."""
        out = self.transformer(
            latents, encoder_hidden_states=cond.prompt_embeds, encoder_attention_mask=cond.attention_mask,
            timestep=timesteps.expand(latents.shape[0]), added_cond_kwargs=self.micro_conditions(latents, cond.prompt_embeds.dtype),
            return_dict=False,
        )[0]
        if out.shape[1] == 2 * latents.shape[1]:
            out = out[:, : latents.shape[1]]
        return out

    def pipeline_inputs(self, cond: Conditioning, negative: Conditioning | None) -> dict:
        kwargs = super().pipeline_inputs(cond, negative)
        kwargs["negative_prompt"] = None  # the pipeline's default "" may not be given with negative_prompt_embeds
        kwargs["prompt_attention_mask"] = cond.attention_mask.to(self.device)
        if negative is not None:
            kwargs["negative_prompt_attention_mask"] = negative.attention_mask.to(self.device)
        # The pipeline's default: sizes snap to the model's aspect-ratio bins and the images are resized back;
        # transformers of other sample sizes (tiny test models) have no bins.
        kwargs["use_resolution_binning"] = self.denoiser.config.sample_size in BINNED_SAMPLE_SIZES
        return kwargs
