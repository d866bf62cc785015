"""The built-in miniatures, `tiny-FAMILY`: each family's diffusers pipeline in miniature, built from configs with
seeded random weights, for smoke tests and CI (`dicecli.builtin` saves one on first use and loads it back through
`from_pretrained`, as any model). Tokenizers need no vocabulary download. A family joins with one builder here and
its line in `MINIATURES`."""

from __future__ import annotations

import torch


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


def tiny_clip_config(tokenizer):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_vae(blocks: int = 2):
    """A tiny AutoencoderKL downsampling by 2 ** (blocks - 1)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32) if blocks == 2 else (8,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1, norm_num_groups=16 if blocks == 2 else 8, sample_size=32,
    )


def t5_char_tokenizer(model_max_length: int = 120):
    """A T5 (Unigram) tokenizer over printable ASCII characters, with and without T5's word-start
    marker: any text tokenizes, no sentencepiece model download. Like T5: no start token, `</s>` ends
    every sequence, `<pad>` (id 0) pads, other characters become `<unk>`."""
    import string

    from transformers import T5Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + c, -1.0) for c in chars] + [(c, -1.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def tiny_sd15():
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


def tiny_sdxl():
    """A miniature SDXL pipeline: two CLIP encoders (32 + 32 wide; the second with a 32-wide pooled
    projection and SDXL's "!" padding), a UNet with text-time conditioning, SDXL's scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = clip_byte_tokenizer(), clip_byte_tokenizer(pad_token="!")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(tiny_clip_config(tokenizer))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(tiny_clip_config(tokenizer_2))
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
    vae = tiny_vae()
    # SDXL base 1.0's own scheduler config.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
    )
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )


def tiny_pixart(sample_size: int = 16, patch_size: int = 2, vae_blocks: int = 2):
    """A miniature PixArt-alpha pipeline: a 2-layer T5 encoder (32 wide), a 2-layer PixArt transformer
    (48 wide) with learned variance (8 output channels) and adaLN-single, PixArt's scheduler config.

    `sample_size` 128 (with a 4-block VAE) gives the 1024 model's resolution/aspect-ratio conditioning.
    """
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_char_tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0,
    ))
    with torch.no_grad():
        # As for the tiny CLIP encoders: smaller outputs keep the transformer's cross-attention in the
        # near-linear regime of trained models, so CFG is distillable (tiny_sd15).
        text_encoder.encoder.final_layer_norm.weight.mul_(0.2)
    torch.manual_seed(1)
    transformer = PixArtTransformer2DModel(
        # 48 wide: the resolution and aspect-ratio embeddings take a third of the width each
        num_attention_heads=3, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=48, caption_channels=32, sample_size=sample_size, patch_size=patch_size,
        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6,
    )
    torch.manual_seed(2)
    vae = tiny_vae(vae_blocks)
    # PixArt-XL-2's own scheduler config (DDPM's linear betas, DPM-Solver++ 2M).
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000,
        prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
    )
    return PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                               scheduler=scheduler)


# family -> (builder, version); bump a version when its builder changes, so that stale copies are rebuilt
MINIATURES = {"sd15": (tiny_sd15, 2), "sdxl": (tiny_sdxl, 1), "pixart": (tiny_pixart, 1)}
