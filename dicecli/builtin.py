"""Built-in models: random-weight `tiny-*` pipelines for smoke tests and CI, and the trained
models that plug-ins ship (`dicecli.plugins`).

Tiny models are built from configs with seeded weights on first use, saved with
`save_pretrained` under the user cache, and then loaded back through the same
`from_pretrained` code as any downloaded model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from dicecli.errors import UsageError
from dicecli.paths import builtin_models_dir
from dicecli.plugins import shipped_models
from dicecli.runtime import quiet_libraries


def is_shipped(name: str) -> bool:
    return name in shipped_models()


def builtin_version(name: str) -> int:
    """The builder's version (bumped when a builder changes, so stale copies are rebuilt); 1 for shipped models."""
    return BUILDERS[name][1] if name in BUILDERS else 1


def builtin_path(name: str) -> Path:
    if is_shipped(name):
        return shipped_models()[name]
    return builtin_models_dir() / f"{name}-v{builtin_version(name)}"


def ensure_builtin(name: str) -> Path:
    """Return the folder of built-in model `name`, building it atomically if needed."""
    if is_shipped(name):
        folder = shipped_models()[name]
        if not (folder / "model_index.json").is_file():
            raise UsageError(f"The shipped model {name} is missing from {folder}; reinstall dicecli.")
        return folder
    if name not in BUILDERS:
        raise UsageError(f"Built-in model {name!r} does not exist; choose one of {', '.join([*BUILDERS, *shipped_models()])}.")
    path = builtin_path(name)
    if (path / "model_index.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        BUILDERS[name][0]().save_pretrained(staging, safe_serialization=True)
        try:
            os.replace(staging, path)
        except OSError:  # another process finished first
            if not (path / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: each byte as a printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def clip_byte_tokenizer(model_max_length: int = 77, pad_token: str = "<|endoftext|>"):
    """A CLIP BPE tokenizer over single bytes (no merges): any text tokenizes, no vocab download."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length, pad_token=pad_token)


def _apply_bpe(pieces: list[str], merges: list[tuple[str, str]]) -> list[str]:
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), len(ranks)), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def clip_word_tokenizer(words: list[str], model_max_length: int = 77):
    """The byte-level CLIP tokenizer plus BPE merges that make each of `words` a single token."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges: list[tuple[str, str]] = []
    for word in words:
        # Split the word as BPE would with the merges so far, then merge what is left, left to right.
        pieces = _apply_bpe(list(word[:-1]) + [word[-1] + "</w>"], merges)
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _tiny_clip_config(tokenizer):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=16, sample_size=32,
    )


def tiny_sd15():
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = clip_byte_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
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
    vae = _tiny_vae()
    # SD1.5's own scheduler config.
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sdxl():
    """A miniature SDXL pipeline: two CLIP encoders (32 + 32 wide; the second with a 32-wide pooled
    projection and SDXL's "!" padding), a UNet with text-time conditioning, SDXL's scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = clip_byte_tokenizer(), clip_byte_tokenizer(pad_token="!")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_config(tokenizer_2))
    with torch.no_grad():
        # In trained SDXL the prompt mostly acts through cross-attention on the token sequence; unit-scale
        # random pooled embeddings would instead steer this tiny UNet mainly through its time embedding,
        # which no enhancer of the sequence can reach. A smaller pooled projection restores the balance.
        text_encoder_2.text_projection.weight.mul_(0.2)
    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=64, norm_num_groups=16,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids x 8 + the pooled embedding
    )
    torch.manual_seed(3)
    vae = _tiny_vae()
    # SDXL base 1.0's own scheduler config.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
    )
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )


# name -> (builder, version); bump a version when its builder changes.
BUILDERS = {"tiny-sd15": (tiny_sd15, 2), "tiny-sdxl": (tiny_sdxl, 1)}
