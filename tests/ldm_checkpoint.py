"""Test helper: write a diffusers SD1.5 pipeline as an original (LDM) single-file checkpoint.

This is how community checkpoints (`model.safetensors` from model sites) are laid out, so
`--model file.safetensors` can be tested through diffusers' real `from_single_file` code
with a tiny model built here. It covers the layouts of the tiny pipelines used in tests
(UNet with plain/cross-attention blocks, VAE, CLIP text encoder), the inverse of diffusers'
`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and `convert_ldm_clip_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _rename(key: str, pairs) -> str:
    for new, old in pairs:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    config, state = unet.config, unet.state_dict()
    per_down = config.layers_per_block + 1  # resnets + downsampler slot
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("time_embedding.linear_1"):
            new = key.replace("time_embedding.linear_1", "time_embed.0")
        elif key.startswith("time_embedding.linear_2"):
            new = key.replace("time_embedding.linear_2", "time_embed.2")
        elif key.startswith("conv_in"):
            new = key.replace("conv_in", "input_blocks.0.0")
        elif key.startswith("conv_norm_out"):
            new = key.replace("conv_norm_out", "out.0")
        elif key.startswith("conv_out"):
            new = key.replace("conv_out", "out.2")
        elif parts[0] == "down_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":
                new = f"input_blocks.{(i + 1) * per_down}.0.op." + ".".join(parts[5:])
            else:
                j = int(parts[3])
                slot = 0 if kind == "resnets" else 1
                new = f"input_blocks.{1 + i * per_down + j}.{slot}." + ".".join(parts[4:])
        elif parts[0] == "mid_block":
            index = {("resnets", "0"): 0, ("attentions", "0"): 1, ("resnets", "1"): 2}[(parts[1], parts[2])]
            new = f"middle_block.{index}." + ".".join(parts[3:])
        elif parts[0] == "up_blocks":
            i, kind = int(parts[1]), parts[2]
            has_attention = "CrossAttn" in config.up_block_types[i]
            if kind == "upsamplers":
                j = config.layers_per_block
                new = f"output_blocks.{i * per_down + j}.{2 if has_attention else 1}.conv." + ".".join(parts[5:])
            else:
                j = int(parts[3])
                new = f"output_blocks.{i * per_down + j}.{0 if kind == 'resnets' else 1}." + ".".join(parts[4:])
        else:
            raise KeyError(key)
        is_resnet = ".resnets." in key or key.startswith(("conv_in", "conv_out", "conv_norm_out", "time_embedding"))
        out["model.diffusion_model." + (_rename("." + new + ".", RESNET).strip(".") if is_resnet else new)] = value
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    blocks = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        parts = key.split(".")
        if parts[1] == "down_blocks":
            i, kind = parts[2], parts[3]
            new = (f"{parts[0]}.down.{i}.downsample.conv." + ".".join(parts[6:]) if kind == "downsamplers"
                   else f"{parts[0]}.down.{i}.block.{parts[4]}." + ".".join(parts[5:]))
        elif parts[1] == "up_blocks":
            i, kind = blocks - 1 - int(parts[2]), parts[3]
            new = (f"{parts[0]}.up.{i}.upsample.conv." + ".".join(parts[6:]) if kind == "upsamplers"
                   else f"{parts[0]}.up.{i}.block.{parts[4]}." + ".".join(parts[5:]))
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
            else:
                new = f"{parts[0]}.mid.attn_1." + _rename("." + ".".join(parts[4:]), VAE_ATTENTION).strip(".")
                if value.ndim == 2:
                    value = value[:, :, None, None]  # LDM keeps the attention projections as 1x1 convs
        else:
            new = key.replace("conv_norm_out", "norm_out")
        out["first_stage_model." + _rename("." + new + ".", VAE_RESNET).strip(".")] = value
    return out


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    return out


def write_single_file(pipe, path: Path) -> Path:
    tensors = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
