"""Built-in `tiny-*` models: random-weight miniature pipelines for smoke tests and CI.

They are built from configs with seeded weights on first use, saved with
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
from dicecli.families.base import quiet_libraries
from dicecli.paths import builtin_models_dir

BUILD_VERSION = 2  # bump when a builder changes, so stale copies are rebuilt


# Trained models shipped inside the package (rebuilt by scripts/toy/build_toy.py).
SHIPPED = {"toy": Path(__file__).resolve().parent / "models" / "toy"}


def builtin_path(name: str) -> Path:
    if name in SHIPPED:
        return SHIPPED[name]
    return builtin_models_dir() / f"{name}-v{BUILD_VERSION}"


def ensure_builtin(name: str) -> Path:
    """Return the folder of built-in model `name`, building it atomically if needed."""
    if name in SHIPPED:
        if not (SHIPPED[name] / "model_index.json").is_file():
            raise UsageError(f"The shipped model {name} is missing from {SHIPPED[name]}; reinstall dicecli.")
        return SHIPPED[name]
    if name not in BUILDERS:
        raise UsageError(f"Built-in model {name!r} does not exist; choose one of {', '.join([*BUILDERS, *SHIPPED])}.")
    path = builtin_path(name)
    if (path / "model_index.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        BUILDERS[name]().save_pretrained(staging, safe_serialization=True)
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


def clip_byte_tokenizer(model_max_length: int = 77):
    """A CLIP BPE tokenizer over single bytes (no merges): any text tokenizes, no vocab download."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


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


def tiny_sd15():
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_byte_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
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
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=16, sample_size=32,
    )
    # SD1.5's own scheduler config.
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


BUILDERS = {"tiny-sd15": tiny_sd15}
