"""The family adapter: every difference between SD1.5, SDXL and PixArt-α lives behind it.

Commands and the method talk to `FamilyAdapter` only. An adapter says what its text side
looks like (`TextSpec`), encodes prompts exactly as the family's diffusers pipeline does,
calls its denoiser with a `Conditioning`, turns images into latents, and builds the
diffusers pipeline call. It receives its components from `dicecli.loading.Components`,
which loads them on first use.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Iterator

import torch
from tqdm.auto import tqdm

from dicecli.errors import UsageError
from dicecli.loading import Components, ModelSource


@dataclass(frozen=True)
class TextSpec:
    """The shape of a family's text conditioning, as the enhancer and the caches see it."""

    tokens: int  # sequence length T
    width: int  # embedding width D (the enhancer's context_dim)
    keep_first_token: bool = True  # a start-of-text token the enhancer leaves alone
    mask: bool = False  # an attention mask travels with the embeddings
    # Which mask the enhanced embedding is used with: "prompt" (the prompt's own) or "all" (every token,
    # so enhanced padding tokens reach the denoiser). Only matters where `mask` is True.
    enhanced_mask: str = "prompt"
    pooled_width: int | None = None  # a pooled embedding that stays the prompt's own
    # The text encoders whose outputs are concatenated along the width, as (name, width); () for one encoder.
    sections: tuple[tuple[str, int], ...] = ()

    def width_sections(self) -> list[tuple[str, slice]]:
        """(name, columns) of each text encoder's part of the embedding width (SDXL: 768 + 1280)."""
        if not self.sections:
            return [("", slice(0, self.width))]
        out, start = [], 0
        for name, width in self.sections:
            out.append((name, slice(start, start + width)))
            start += width
        return out


@dataclass
class Conditioning:
    """A batch of text conditioning, as the denoiser consumes it."""

    prompt_embeds: torch.Tensor  # [N, T, D]
    eos_index: torch.Tensor  # [N] position of the first end-of-text token
    pooled_prompt_embeds: torch.Tensor | None = None  # [N, P] (SDXL)
    attention_mask: torch.Tensor | None = None  # [N, T] (PixArt-α)

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def map(self, fn) -> "Conditioning":
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None})

    def to(self, device=None, dtype=None) -> "Conditioning":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return self.map(move)

    def __getitem__(self, index) -> "Conditioning":
        return self.map(lambda t: t[index])

    def repeat(self, n: int) -> "Conditioning":
        """A single row repeated n times (one negative prompt for a whole batch)."""
        return self if len(self) == n else Conditioning.cat([self] * n)

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        first = items[0]
        return replace(first, **{
            f.name: torch.cat([getattr(i, f.name) for i in items]) for f in fields(first) if getattr(first, f.name) is not None
        })

    def semantic_positions(self) -> torch.Tensor:
        """[N, T] bool: the prompt's own tokens, from the first through the end-of-text token (under a mask, the
        masked-in tokens are exactly these); the rest is the padding part (the paper's section 4.3)."""
        positions = torch.arange(self.prompt_embeds.shape[1], device=self.prompt_embeds.device)
        return positions[None, :] <= self.eos_index.to(positions.device)[:, None]

    def with_embeds(self, prompt_embeds: torch.Tensor) -> "Conditioning":
        """The same conditioning with another token sequence (the enhanced one); pooled embeds stay."""
        return replace(self, prompt_embeds=prompt_embeds)


@dataclass
class EncodedPrompts:
    conditioning: Conditioning
    truncated: int  # how many prompts were longer than the token limit


@dataclass
class Tokens:
    """Prompts as the family's pipeline tokenizes them for its (first) text encoder: the tokenization hook."""

    input_ids: torch.Tensor  # [N, T], padded and truncated as the pipeline does
    eos_index: torch.Tensor  # [N] position of the first end-of-text token: where the padding part begins
    truncated: int  # how many prompts were longer than T


class FamilyAdapter(ABC):
    """One loaded model of a family and the operations DICE needs from it."""

    family: ClassVar[str]
    pipeline_class_name: ClassVar[str]
    denoiser_name: ClassVar[str]  # "unet" or "transformer"
    text_components: ClassVar[tuple[str, ...]]
    all_components: ClassVar[tuple[str, ...]]
    pipeline_components: ClassVar[tuple[str, ...]]
    # Single-file checkpoints in the original layout: a tensor-name prefix only this family has,
    # the diffusers config repo of its base model, and its text shape (read without weights);
    # None where the family is not shared as single files.
    checkpoint_key_prefix: ClassVar[str | None]
    single_file_config: ClassVar[str | None]
    single_file_text: ClassVar[TextSpec | None]
    single_file_size: ClassVar[int | None] = None  # the native image size of the family's single-file checkpoints
    # Family defaults per stage; a recipe's values and then the command line override them.
    defaults: ClassVar[dict[str, dict]] = {}
    load_kwargs: ClassVar[dict] = {}  # extra from_pretrained arguments
    min_sampling_steps: ClassVar[int] = 1  # fewer than the family's pipeline can sample with
    min_sampling_steps_reason: ClassVar[str] = ""
    # Pipelines an enhancer can be attached to (`dicecli.api.attach`: their `encode_prompt` is the family's), and
    # where `encode_prompt` returns the prompt's embeddings (and its attention mask or pooled embedding).
    attachable_pipelines: ClassVar[tuple[str, ...]] = ()
    # ComfyUI's CLIP Text Encode makes this family's conditioning as `encode` does: 77-token CLIP sequences, a long
    # prompt as several of them (`dicecli.comfyui`).
    comfyui_conditioning: ClassVar[bool] = False
    encode_prompt_outputs: ClassVar[dict[str, int]] = {"prompt_embeds": 0}
    def __init__(self, components: Components, clip_skip: int = 1, embeddings: tuple = (), loras: tuple = ()):
        self.components = components
        self.loras = tuple(loras)  # LoRAs (`dicecli.lora.LoRA`), applied once the model's parts are loaded
        self._loras_applied = not self.loras
        self.clip_skip = clip_skip  # A1111's convention (`checked_clip_skip`); 1: the pipeline's own default
        self.embeddings = tuple(embeddings)  # textual-inversion embeddings (`dicecli.textual_inversion.Embedding`)
        self._embeddings_loaded = not self.embeddings
        self.device, self.dtype = components.device, components.dtype
        self._null: Conditioning | None = None
        self._text_fingerprint: str | None = None

    # -- components -------------------------------------------------------------------
    def require(self, *names: str) -> None:
        self.components.require(*names)
        self.apply_loras()

    # A LoRA can touch the text encoders and the denoiser: those are loaded together when a LoRA is given.
    lora_components: ClassVar[tuple[str, ...]] = ()

    def apply_loras(self) -> None:
        """The LoRAs into the text encoders and the denoiser, once, by the pipeline's own `load_lora_weights` (every
        layout diffusers reads) and `set_adapters` (their scales); everything stays frozen."""
        if self._loras_applied:
            return
        self._loras_applied = True
        self.components.require(*self.lora_components)
        parts = {name: None for name in self.pipeline_components}
        parts.update({name: self.components[name] for name in self.lora_components})
        pipe = self.pipeline_class(**parts, **self.pipeline_kwargs())
        names = [f"lora{i}" for i in range(len(self.loras))]
        for name, lora in zip(names, self.loras):
            try:
                pipe.load_lora_weights(dict(lora.tensors), adapter_name=name)
            except ValueError as error:
                if "version of PEFT" in str(error):  # transformers' own check, for the text-encoder part
                    raise UsageError(f"--lora {lora.path} has text-encoder weights, which transformers loads only with "
                                     f"a newer peft ({str(error).split('>=')[-1].strip()} or later); install it "
                                     "(`pip install -U peft`), or use a LoRA for the UNet only.") from None
                raise UsageError(f"--lora {lora.path} does not fit {self.components.name} ({self.family}): "
                                 f"{str(error).splitlines()[0][:160]}; use a LoRA made for this model's family.") from None
            except (KeyError, RuntimeError) as error:
                raise UsageError(f"--lora {lora.path} does not fit {self.components.name} ({self.family}): "
                                 f"{str(error).splitlines()[0][:160]}; use a LoRA made for this model's family.") from None
        pipe.set_adapters(names, adapter_weights=[lora.scale for lora in self.loras])
        for name in self.lora_components:
            if isinstance(self.components[name], torch.nn.Module):
                self.components[name].requires_grad_(False)

    def __getattr__(self, name: str):
        if name in type(self).all_components:
            return self.components[name]
        raise AttributeError(name)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.components[self.denoiser_name]

    def training_components(self, with_vae: bool) -> tuple[str, ...]:
        """What distillation needs loaded: text side, denoiser, scheduler, and the VAE unless latents are cached."""
        return (*self.text_components, self.denoiser_name, "scheduler", *(("vae",) if with_vae else ()))

    def compile_denoiser(self, vae_decoder: bool = False) -> None:
        """torch.compile the denoiser (and the VAE decoder) in place; the first calls are slow while it compiles.

        The VAE decoder also moves to channels-last memory, which its convolutions run faster in on GPUs.
        """
        self.components[self.denoiser_name] = torch.compile(self.denoiser)
        if vae_decoder:
            self.vae.decoder.to(memory_format=torch.channels_last)
            self.vae.decoder = torch.compile(self.vae.decoder)

    # -- text ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def text(self) -> TextSpec:
        """The text spec of the loaded model."""

    @classmethod
    @abstractmethod
    def text_from_configs(cls, source: ModelSource) -> TextSpec:
        """The text spec from config files only, so compatibility is checked before weights load."""

    @classmethod
    def text_without_weights(cls, source: ModelSource) -> TextSpec:
        return cls.single_file_text if source.single_file else cls.text_from_configs(source)

    max_sequence_length: ClassVar[int | None] = None  # tokens per prompt; None: the tokenizer's model_max_length
    # CLIP text encoders: how many layers `--clip-skip` may skip back from (A1111's "Clip skip"); None: no clip skip
    # (T5). The encoders' own configs say it; single-file checkpoints, whose configs are not at hand, this.
    single_file_clip_layers: ClassVar[int | None] = None

    @classmethod
    def clip_layers(cls, source: ModelSource) -> int | None:
        """The number of layers of the (shallowest) CLIP text encoder, from config files; None without clip skip."""
        return None

    @classmethod
    def checked_clip_skip(cls, clip_skip: int, source: ModelSource, model: str) -> int:
        """`--clip-skip` (or a recipe's `clip_skip`) for this model, refused in one sentence where it cannot apply."""
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
            raise UsageError(f"--clip-skip {clip_skip!r} must be a whole number of at least 1 (1: the text encoder's "
                             "usual output, 2: the penultimate layer, as A1111's Clip skip).")
        if clip_skip == 1:
            return 1
        layers = cls.single_file_clip_layers if source.single_file else cls.clip_layers(source)
        if layers is None:
            raise UsageError(f"--clip-skip {clip_skip}: {model} ({cls.family}) has no CLIP text encoder to skip "
                             "layers of; drop --clip-skip.")
        if clip_skip > layers:
            raise UsageError(f"--clip-skip {clip_skip} is beyond {model}'s {layers} text-encoder layers; use 1 to "
                             f"{layers} (2 is the usual Clip skip 2).")
        return clip_skip

    # Textual inversion: the text encoders (tokenizer, encoder) an embedding file's vectors go to, by the file's key;
    # None: the family takes no embeddings (T5).
    embedding_encoders: ClassVar[dict[str, tuple[str, str]] | None] = None

    @classmethod
    def check_embedding(cls, embedding, text: TextSpec, model: str) -> None:
        """Refuse, in one sentence and from config files only, an embedding made for another family or width."""
        from dicecli.errors import IncompatibleError

        if cls.embedding_encoders is None:
            raise UsageError(f"--embedding {embedding.path}: {model} ({cls.family}) takes no textual-inversion embeddings "
                             "(they are made for CLIP text encoders); drop --embedding.")
        if set(embedding.vectors) != set(cls.embedding_encoders):
            made_for = "SDXL (clip_l + clip_g)" if "clip_g" in embedding.vectors else "SD1.5 (one CLIP encoder)"
            raise IncompatibleError(f"--embedding {embedding.path} is made for {made_for} text encoders, not {model}'s "
                                    f"({cls.family}); use an embedding made for {cls.family} models.")
        widths = {name: part.stop - part.start for name, part in text.width_sections()}
        for key, (_, encoder) in cls.embedding_encoders.items():
            width = widths.get(encoder, text.width)
            if embedding.vectors[key].shape[1] != width:
                raise IncompatibleError(f"--embedding {embedding.path} has {embedding.vectors[key].shape[1]}-wide vectors "
                                        f"but {model}'s {encoder} is {width} wide; use an embedding made for this model.")

    def load_embeddings(self) -> None:
        """The textual-inversion embeddings into their text encoders, once, by the pipeline's own
        `load_textual_inversion` (which adds each token to the tokenizer and its vectors to the encoder)."""
        if self._embeddings_loaded:
            return
        self._embeddings_loaded = True
        pipe = self._text_pipeline()
        for embedding in self.embeddings:
            for key, (tokenizer, encoder) in self.embedding_encoders.items():
                pipe.load_textual_inversion(embedding.vectors[key], token=embedding.token,
                                            tokenizer=self.components[tokenizer], text_encoder=self.components[encoder])
        for name in self.text_components:  # resizing the token embeddings made a new, trainable matrix: freeze it
            if isinstance(self.components[name], torch.nn.Module):
                self.components[name].requires_grad_(False)

    def encode_prompt_clip_skip(self) -> int | None:
        """`clip_skip` as diffusers' `encode_prompt` counts it: layers skipped beyond its default (A1111's 2 is 1)."""
        return None if self.clip_skip == 1 else self.clip_skip - 1

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        """The prompts as the pipeline's `encode_prompt` hands them to its tokenizer (PixArt lower-cases them)."""
        return list(prompts)

    def tokenize(self, prompts: list[str]) -> Tokens:
        """The one tokenization hook: what `encode` needs beyond the pipeline's own `encode_prompt` (the end-of-text
        positions, the truncation count), and what the analyses and the Python API read token positions from."""
        texts, tokenizer = self.prompt_texts(prompts), self.tokenizer
        pipe = self.text_pipeline()
        if hasattr(pipe, "maybe_convert_prompt"):  # a multi-vector embedding's token becomes its N tokens, as encode_prompt does
            texts = pipe.maybe_convert_prompt(texts, tokenizer)
        length = self.max_sequence_length or tokenizer.model_max_length
        ids = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        truncated = sum(len(row) > length for row in tokenizer(texts, truncation=False).input_ids)
        return Tokens(ids, (ids == tokenizer.eos_token_id).int().argmax(dim=1), truncated)

    def text_pipeline(self):
        """The family's diffusers pipeline over the current text components alone (no denoiser or VAE is loaded), with
        the textual-inversion embeddings loaded. Built for every call (under a millisecond), so a swapped or moved
        component is always the one used."""
        self.load_embeddings()
        return self._text_pipeline()

    def _text_pipeline(self):
        self.require(*self.text_components)
        parts = {name: None for name in self.pipeline_components}
        parts.update({name: self.components[name] for name in self.text_components})
        return self.pipeline_class(**parts, **self.pipeline_kwargs())

    @abstractmethod
    def encode_prompt(self, pipe, prompts: list[str]) -> dict[str, torch.Tensor]:
        """`pipe.encode_prompt` for `prompts`, one image each and no CFG: the `Conditioning` fields it gives (the
        prompt embeddings, and the pooled embedding or the attention mask where the family has one)."""

    def encode(self, prompts: list[str]) -> EncodedPrompts:
        """Prompts encoded by the family's own diffusers pipeline (its `encode_prompt`), without gradients."""
        with torch.no_grad():
            return self.encode_differentiable(prompts)

    def encode_differentiable(self, prompts: list[str]) -> EncodedPrompts:
        """`encode` under the caller's autograd mode: `encode_prompt` is not a no-grad function, so trigger search
        differentiates through the text encoders with it."""
        tokens = self.tokenize(prompts)
        fields = self.encode_prompt(self.text_pipeline(), list(prompts))
        return EncodedPrompts(Conditioning(eos_index=tokens.eos_index, **fields), tokens.truncated)

    def encode_batches(self, prompts: list[str], batch_size: int = 64, progress: bool = False,
                       desc: str = "encode") -> Iterator[tuple[list[str], EncodedPrompts]]:
        """(prompts, EncodedPrompts) in batches, with a progress bar on a terminal."""
        with tqdm(total=len(prompts), unit="prompt", desc=desc, disable=not progress, leave=False) as bar:
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start : start + batch_size]
                yield batch, self.encode(batch)
                bar.update(len(batch))

    def encode_all(self, prompts: list[str], batch_size: int = 64) -> Conditioning:
        return Conditioning.cat([encoded.conditioning for _, encoded in self.encode_batches(prompts, batch_size)])

    def null(self) -> Conditioning:
        """The encoded empty prompt on the model's device: DICE's null input, and the plain CFG negative."""
        if self._null is None:
            self._null = self.encode([""]).conditioning.to(self.device)
        return self._null

    def negative(self, text: str | None) -> Conditioning:
        """The enhancer's second input: a negative prompt's embedding, or the null embedding."""
        return self.encode([text]).conditioning.to(self.device) if text else self.null()

    def unconditional(self, text: str | None) -> Conditioning:
        """The CFG negative branch as the family's pipeline builds it (SDXL may use zeros for no negative)."""
        return self.negative(text)

    def text_encoder_fingerprint(self) -> str:
        """A dtype-independent hash of the text encoder(s) and tokenizer vocabularies (caches and enhancers
        record it; `dicecli.preparation` compares it)."""
        if self._text_fingerprint is None:  # the weights are frozen: hash them once per loaded model
            self.load_embeddings()  # an embedding's vectors and token are part of what the text encoder is
            self._text_fingerprint = fingerprint({name: self.components[name] for name in self.text_components})
        return self._text_fingerprint

    def vae_fingerprint(self) -> str:
        """The same hash of the VAE, which latent caches record: latents only make sense to the VAE that made them."""
        return fingerprint({"vae": self.vae})

    # -- denoising ----------------------------------------------------------------------
    @abstractmethod
    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """One denoiser evaluation: the model's raw prediction (epsilon or v)."""

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    # -- images <-> latents ---------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent: from the VAE's config, read without its weights when it is not loaded."""
        if "vae" in self.components.modules:
            config = self.vae.config
        elif self.components.source.single_file or self.components.vae:
            return 8  # every SD1.5/SDXL VAE
        else:
            config = read_json(self.components.source, "vae/config.json")
        return 2 ** (len(config["block_out_channels"]) - 1)

    def default_size(self) -> int:
        """Native image size: the denoiser's sample size times the VAE's downsampling."""
        return int(self.denoiser.config.sample_size) * self.vae_scale_factor

    @classmethod
    def size_without_weights(cls, source: ModelSource) -> int:
        """The native image size from config files only (as diffusers computes it: the denoiser's sample size
        times the VAE's downsampling), so sizes are chosen and checked before any weights load."""
        try:
            denoiser = read_json(source, f"{cls.denoiser_name}/config.json")
            vae = read_json(source, "vae/config.json")
        except UsageError:
            if source.single_file:  # its base model's config is not at hand (yet): the family's native size
                return cls.single_file_size
            raise
        return int(denoiser["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)

    @torch.no_grad()
    def images_to_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the denoiser's latents (VAE mean, shifted and scaled), in float32.

        A VAE that overflows in float16 (`force_upcast`) runs in float32, as diffusers does.
        """
        vae = self.vae
        upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
        dtype = torch.float32 if upcast else vae.dtype
        if upcast:
            vae.to(torch.float32)
        try:
            latents = vae.encode(images.to(self.device, dtype)).latent_dist.mean
        finally:
            if upcast:
                vae.to(torch.float16)
        shift = vae.config.get("shift_factor") or 0.0
        return ((latents.float() - shift) * vae.config.scaling_factor)

    # -- sampling with the family's diffusers pipeline --------------------------------------
    @property
    def pipeline_class(self):
        return self.components.pipeline_class

    def pipeline(self, scheduler=None):
        """The family's diffusers pipeline around the loaded components."""
        self.require(*self.pipeline_components)
        parts = {name: self.components[name] for name in self.pipeline_components}
        if scheduler is not None:
            parts["scheduler"] = scheduler
        pipe = self.pipeline_class(**parts, **self.pipeline_kwargs())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def pipeline_kwargs(self) -> dict:
        """Constructor arguments beyond the components (the model's own pipeline settings)."""
        return {}

    def pipeline_inputs(self, cond: Conditioning, negative: Conditioning | None) -> dict:
        """Call arguments that pass precomputed embeddings instead of prompts (negative only with CFG)."""
        kwargs = {"prompt_embeds": cond.prompt_embeds.to(self.device, self.dtype)}
        if negative is not None:
            kwargs["negative_prompt_embeds"] = negative.prompt_embeds.to(self.device, self.dtype)
        return kwargs


def fingerprint(modules: dict) -> str:
    """A dtype-independent hash of modules' weights (and tokenizers' vocabularies).

    Values are rounded to bf16 and sub-sampled, so the same weights loaded in fp32 or bf16 give the same
    fingerprint and billion-parameter encoders hash quickly."""
    digest = hashlib.sha256()
    for name, module in modules.items():
        if isinstance(module, torch.nn.Module):
            for key, tensor in sorted(module.state_dict().items()):
                flat = tensor.detach().flatten()
                flat = flat[:: max(1, flat.numel() // 65536)].to("cpu", torch.bfloat16).view(torch.int16)
                digest.update(f"{name}.{key}{tuple(tensor.shape)}".encode())
                digest.update(flat.numpy().tobytes())
        else:  # a tokenizer
            digest.update(repr(sorted(module.get_vocab().items())).encode())
    return digest.hexdigest()[:16]


def read_json(source: ModelSource, name: str) -> dict:
    return json.loads(source.config_file(name).read_text())
