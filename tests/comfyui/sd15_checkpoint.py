"""A full-size SD1.5 single-file checkpoint with seeded random weights, as community checkpoints are laid out:
the real architecture (860 M UNet, CLIP ViT-L/14 over CLIP's 49,408-token vocabulary, the SD VAE) so that ComfyUI
recognises it, in float16 (2.1 GB)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from ldm_checkpoint import write_single_file


def write_sd15_checkpoint(path: Path) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # SD1.5 = the class defaults + 768
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=512)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))
    parts = SimpleNamespace(unet=unet.half(), vae=vae.half(), text_encoder=text_encoder.half())
    return write_single_file(parts, path)
