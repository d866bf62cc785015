"""Random-weight pipelines with the real SD1.5, SDXL and PixArt-alpha architectures (for speed measurements only).

Speed does not depend on trained weights, so benchmarks use these instead of a download:
the UNet or transformer, VAE and text encoders at each model's published config (over
dicecli's byte/character tokenizers), and each model's own scheduler config. Weights are initialised on the GPU when
there is one (seconds instead of minutes for SDXL's 2.6 B-parameter UNet).

    python benchmarks/random_models.py sd15|sdxl|pixart|pixart-1024 FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def _clip_l(tokenizer):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _sd_vae(**extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, **extra)


def sd15():
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from dicecli.miniatures import clip_byte_tokenizer

    tokenizer = clip_byte_tokenizer()
    torch.manual_seed(0)
    return StableDiffusionPipeline(
        vae=_sd_vae(sample_size=512), text_encoder=CLIPTextModel(_clip_l(tokenizer)), tokenizer=tokenizer,
        unet=UNet2DConditionModel(sample_size=64, cross_attention_dim=768),  # SD1.5 = the class defaults + 768
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def sdxl():
    """SDXL base 1.0: CLIP ViT-L + OpenCLIP ViT-bigG text encoders, the 2.6 B UNet, the SDXL VAE."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dicecli.miniatures import clip_byte_tokenizer

    tokenizer, tokenizer_2 = clip_byte_tokenizer(), clip_byte_tokenizer(pad_token="!")
    torch.manual_seed(0)
    big_g = CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
        num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
        bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id, pad_token_id=tokenizer_2.pad_token_id,
    )
    unet = UNet2DConditionModel(
        sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    return StableDiffusionXLPipeline(
        vae=_sd_vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(_clip_l(tokenizer)), text_encoder_2=CLIPTextModelWithProjection(big_g),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )


def pixart(sample_size: int = 64):
    """PixArt-XL-2-512x512: the T5-XXL v1.1 encoder (4.8 B parameters with its 32,128-token embedding),
    the 0.6 B DiT (28 layers, 1152 wide, 2x2 patches, learned variance), the SD VAE. Sample size 128
    is PixArt-XL-2-1024-MS (resolution and aspect-ratio conditions)."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from dicecli.miniatures import t5_char_tokenizer

    tokenizer = t5_char_tokenizer()
    torch.manual_seed(0)
    t5_xxl = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
        cross_attention_dim=1152, caption_channels=4096, sample_size=sample_size, patch_size=2, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6,
    )
    return PixArtAlphaPipeline(
        tokenizer=tokenizer, text_encoder=T5EncoderModel(t5_xxl), vae=_sd_vae(sample_size=8 * sample_size),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                              algorithm_type="dpmsolver++"),
    )


def _tiny(family: str):
    """The test suite's tiny model of a family: every benchmark runs on it on a CPU (tests/test_benchmarks.py), so
    that a change cannot break a benchmark unseen."""
    from dicecli.miniatures import MINIATURES

    return MINIATURES[family][0]


ARCHITECTURES = {"sd15": sd15, "sdxl": sdxl, "pixart": pixart, "pixart-1024": lambda: pixart(sample_size=128),
                 **{f"tiny-{family}": _tiny(family) for family in ("sd15", "sdxl", "pixart")}}
NATIVE_SIZE = {"sd15": 512, "sdxl": 1024, "pixart": 512, "pixart-1024": 1024, "tiny-sd15": 32, "tiny-sdxl": 32,
               "tiny-pixart": 32}
# Benchmarks measure on the GPU in bf16; on a machine without one they run (as smoke tests) on the CPU in fp32.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"


def peak_memory_gb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE.type == "cuda" else None


def build(arch: str, folder: Path, dtype=DTYPE) -> Path:
    if (folder / "model_index.json").exists():
        return folder
    with torch.device(DEVICE):
        pipe = ARCHITECTURES[arch]()
    pipe.to(dtype).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(build(sys.argv[1], Path(sys.argv[2])))
