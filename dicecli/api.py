"""dicecli's Python API: enhancers on the diffusers pipelines you already have (docs/python.md).

    import dicecli
    pipe = StableDiffusionPipeline.from_pretrained(...)
    dicecli.attach(pipe, "ds.safetensors")           # like loading a LoRA
    image = pipe("a red cat", guidance_scale=1.0).images[0]   # DICE: one model evaluation per step
    dicecli.detach(pipe)                             # the pipeline exactly as it was

Everything here goes through the functions the command line uses (`dicecli.preparation`, `dicecli.method`,
the family adapters), so an enhancer is checked with the same sentences and gives the same images as
`dice sample --enhancer`. Errors are `DiceError`s (`UsageError`, `IncompatibleError`, `DamagedError`) whose
message is one sentence saying what to change. Nothing here imports torch or diffusers until it is called.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicecli.errors import DamagedError, DiceError, IncompatibleError, UsageError

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

    from dicecli.enhancer import Enhancer
    from dicecli.families import Conditioning, FamilyAdapter

__all__ = [
    "Attachment",
    "CachedEmbeddings",
    "DamagedError",
    "DiceError",
    "IncompatibleError",
    "LoadedEnhancer",
    "UsageError",
    "attach",
    "detach",
    "enhanced_embeddings",
    "load_enhancer",
    "load_pipeline",
    "read_cache",
    "set_scheduler",
    "write_cache",
]



def load_pipeline(model: str, *, device: str = "auto", dtype: str = "auto", vae: str | None = None) -> "DiffusionPipeline":
    """The family's diffusers pipeline for any model name `dice` takes: a recipe name (`dreamshaper`), a hub id, a
    diffusers folder, a single-file .safetensors checkpoint or a built-in model (`tiny-sd15`); `vae` replaces the
    VAE as `--vae` does. `device`/`dtype` as `--device`/`--dtype` (auto: CUDA and bf16 when there is a GPU). The
    pipeline keeps the model's own scheduler; `set_scheduler(pipe, "dpmsolver++")` gives `dice sample`'s default."""
    from dicecli.families import load_adapter
    from dicecli.refs import resolve_model
    from dicecli.runtime import select_device, select_dtype

    torch_device = select_device(device)
    pipe = load_adapter(resolve_model(model, vae=vae), torch_device, select_dtype(dtype, torch_device)).pipeline()
    pipe.set_progress_bar_config(disable=False)
    return pipe


def set_scheduler(pipe: "DiffusionPipeline", name: str) -> None:
    """Give `pipe` the sampler `dice sample --scheduler NAME` uses (dpmsolver++, ddim, euler, euler-a, pndm,
    unipc), built from the pipeline's own scheduler config."""
    from dicecli.sampling import make_scheduler

    pipe.scheduler = make_scheduler(name, pipe.scheduler.config)


@dataclass
class LoadedEnhancer:
    """An enhancer file checked against a pipeline, with its network on the pipeline's device."""

    path: Path
    family: str
    metadata: dict[str, Any]
    network: "Enhancer" = field(repr=False)
    notes: list[str] = field(default_factory=list)  # e.g. trained on another model of the family (a transfer)

    @property
    def name(self) -> str:
        return self.path.name


def load_enhancer(enhancer: str | Path, pipe: "DiffusionPipeline") -> LoadedEnhancer:
    """Read an enhancer file (or the name of one a plug-in ships) and check it against `pipe` exactly as
    `dice sample` checks it against a model: another family, embedding width or token count is refused
    (`IncompatibleError`); another text encoder of the family is used as a transfer, with a `UserWarning`."""
    from dicecli.families import adapter_for_pipeline
    from dicecli.preparation import open_enhancer

    return _load(open_enhancer(enhancer), adapter_for_pipeline(pipe))


def _load(choice, adapter: "FamilyAdapter") -> LoadedEnhancer:
    from dicecli.enhancer import check_compatible
    from dicecli.preparation import enhancer_note

    name = adapter.components.name
    check_compatible(choice.meta, choice.path, family=adapter.family, model=name)
    text = adapter.text
    check_compatible(choice.meta, choice.path, family=adapter.family, context_dim=text.width, tokens=text.tokens,
                     model=name)
    notes = [n for n in [enhancer_note(choice, adapter, name)] if n]
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return LoadedEnhancer(choice.path, adapter.family, choice.meta, choice.load(adapter.device), notes)


def _enhancer(enhancer: "str | Path | LoadedEnhancer", adapter: "FamilyAdapter") -> LoadedEnhancer:
    import os

    from dicecli.preparation import open_enhancer

    if not isinstance(enhancer, (str, os.PathLike, LoadedEnhancer)):
        raise UsageError(f"An enhancer is a .safetensors file's path, the name of one a plug-in ships, or a "
                         f"LoadedEnhancer (dicecli.load_enhancer), not a {type(enhancer).__name__}.")

    if isinstance(enhancer, LoadedEnhancer):
        if enhancer.family != adapter.family:
            raise IncompatibleError(f"Enhancer {enhancer.path} was trained for the {enhancer.family} family and cannot "
                                    f"be used with {adapter.components.name} ({adapter.family}); use an enhancer "
                                    f"trained on a {adapter.family} model.")
        return enhancer
    return _load(open_enhancer(enhancer), adapter)


def _check(alpha: float, part: str) -> None:
    from dicecli.settings import ENHANCED_PARTS, SampleConfig, check_choice

    SampleConfig(alpha=alpha).check(None)
    check_choice("part", part, ENHANCED_PARTS)


def _prompts(prompt: str | list[str]) -> list[str]:
    return [prompt] if isinstance(prompt, str) else list(prompt)


def _negative_for_enhancer(adapter: "FamilyAdapter", negative_prompt: str | list[str] | None, rows: int) -> "Conditioning":
    """The enhancer's second input, as `dice sample` builds it: the negative prompt's embedding, else the null one."""
    from dicecli.families import Conditioning

    if negative_prompt is None or isinstance(negative_prompt, str):
        return adapter.negative(negative_prompt or None)
    negatives = list(negative_prompt)
    if len(negatives) != rows:
        raise UsageError(f"negative_prompt has {len(negatives)} entries for {rows} prompts; give one, or one per prompt.")
    return Conditioning.cat([adapter.negative(n or None) for n in negatives])


def enhanced_embeddings(pipe: "DiffusionPipeline", enhancer: "str | Path | LoadedEnhancer", prompt: str | list[str], *,
                        negative_prompt: str | list[str] | None = None, alpha: float = 1.0, part: str = "all",
                        guidance_scale: float = 1.0) -> dict[str, "torch.Tensor"]:
    """The keyword arguments that make `pipe(**kwargs, guidance_scale=...)` sample with DICE: `prompt_embeds` (and
    `pooled_prompt_embeds`, `prompt_attention_mask`, ... as the family's pipeline takes them), enhanced with
    strength `alpha` (only the `part` given: all, semantic or padding). With `guidance_scale` above 1 (DICE + CFG)
    they include the negative branch, as `dice sample --cfg` builds it. Pass the same `guidance_scale` to the
    pipeline."""
    from dicecli.families import adapter_for_pipeline
    from dicecli.method import enhance_conditioning

    _check(alpha, part)
    adapter = adapter_for_pipeline(pipe)
    loaded = _enhancer(enhancer, adapter)
    prompts = _prompts(prompt)
    cond = adapter.encode_all(prompts).to(adapter.device)
    negative = _negative_for_enhancer(adapter, negative_prompt, len(prompts))
    enhanced = enhance_conditioning(loaded.network, cond, negative, alpha, part, adapter.dtype)
    cfg_negative = None
    if guidance_scale > 1:  # the CFG negative branch, as the family's pipeline builds it (SDXL: zeros for none)
        if isinstance(negative_prompt, list):
            from dicecli.families import Conditioning

            cfg_negative = Conditioning.cat([adapter.unconditional(n or None) for n in negative_prompt])
        else:
            cfg_negative = adapter.unconditional(negative_prompt or None).repeat(len(prompts))
    return _marked(adapter.pipeline_inputs(enhanced.to(adapter.device, adapter.dtype), cfg_negative))


# -- the diffusers integration ------------------------------------------------------------------------------
ATTACHMENT = "_dicecli_attachment"  # where an attached pipeline keeps its Attachment
ENHANCED_MARK = "_dicecli_enhanced"  # set on tensors that hold enhanced embeddings


@dataclass
class Attachment:
    """An enhancer attached to a pipeline: every prompt the pipeline encodes is enhanced, with strength `alpha`
    (change it at any time) on the `part` given. `detach()` restores the pipeline exactly."""

    pipe: Any = field(repr=False)
    enhancer: LoadedEnhancer
    alpha: float = 1.0
    part: str = "all"

    def detach(self) -> None:
        detach(self.pipe)


def attach(pipe: "DiffusionPipeline", enhancer: "str | Path | LoadedEnhancer", *, alpha: float = 1.0, part: str = "all") -> Attachment:
    """Attach an enhancer to a StableDiffusion(Img2Img)Pipeline, StableDiffusionXL(Img2Img)Pipeline or
    PixArtAlphaPipeline: `pipe(prompt, guidance_scale=1.0)` then samples with DICE (one model evaluation per step),
    and `guidance_scale` above 1 with DICE + CFG. The enhancer's second input is the call's `negative_prompt`
    (else the empty prompt), encoded by the pipeline's own `encode_prompt` with the call's settings, as in
    `dice sample`. Attaching to a pipeline that already has one, to another kind of pipeline, or an enhancer of
    another family raises one `DiceError`.

    Nothing of the pipeline is captured: its components, device and dtype are read when it encodes, so `.to()`,
    `enable_model_cpu_offload()` / `enable_sequential_cpu_offload()` (before or after attaching), a swapped text
    encoder and `copy.deepcopy` all hold; `alpha` and `part` are checked at every call, as the CLI checks them."""
    import types

    from dicecli.families import adapter_for_pipeline

    _check(alpha, part)
    if getattr(pipe, ATTACHMENT, None) is not None:
        raise UsageError(f"{type(pipe).__name__} already has enhancer {getattr(pipe, ATTACHMENT).enhancer.name} "
                         "attached; detach it first (dicecli.detach(pipe)).")
    attachment = Attachment(pipe, _enhancer(enhancer, adapter_for_pipeline(pipe)), alpha, part)
    object.__setattr__(pipe, ATTACHMENT, attachment)
    # a method bound to this pipeline: copy.deepcopy binds the copy's to the copy
    object.__setattr__(pipe, "encode_prompt", types.MethodType(_enhancing(type(pipe).encode_prompt), pipe))
    return attachment


def _enhancing(original):
    """The class's own `encode_prompt`, then the enhancement of its output (`__wrapped__` keeps the signature,
    which pipelines read to route their arguments)."""
    import functools

    signature = inspect.signature(original)

    @functools.wraps(original)
    def encode_prompt(pipe, *args, **kwargs):
        call = signature.bind(pipe, *args, **kwargs)
        call.apply_defaults()
        attachment = getattr(pipe, ATTACHMENT)
        _check(attachment.alpha, attachment.part)
        given = call.arguments.get("prompt_embeds")
        if given is not None and getattr(given, ENHANCED_MARK, False):
            raise UsageError("These prompt_embeds are already enhanced (an enhanced cache's pipeline_kwargs, or "
                             "dicecli.enhanced_embeddings); pass them to the pipeline without an enhancer attached "
                             "(dicecli.detach(pipe)), or pass prompts.")
        out = list(original(pipe, *args, **kwargs))
        _enhance_outputs(pipe, original, attachment, out, call.arguments)
        return tuple(out)

    return encode_prompt


def _enhance_outputs(pipe, original, attachment: Attachment, out: list, arguments: dict) -> None:
    """Replace the prompt's embeddings (and, where the enhancer widens it, its mask) in `encode_prompt`'s output."""
    import torch

    from dicecli.families import Conditioning, adapter_for_pipeline
    from dicecli.method import enhance_conditioning

    adapter = adapter_for_pipeline(pipe)  # the pipeline as it is now
    outputs = type(adapter).encode_prompt_outputs
    embeds = out[outputs["prompt_embeds"]]
    mask = out[outputs["attention_mask"]] if "attention_mask" in outputs else None
    prompt = arguments.get("prompt")
    per_prompt = int(arguments.get("num_images_per_prompt") or 1)
    if prompt is not None:
        prompts = _prompts(prompt)
        eos = _end_of_text(adapter, prompts, per_prompt)
    else:  # the caller passed prompt_embeds: enhanced as they are, whole (no tokens to split them by)
        if attachment.part != "all":
            raise UsageError(f"An enhancer attached with part={attachment.part!r} needs prompts, not prompt_embeds, "
                             "to find the end-of-text token.")
        prompts, eos = [], torch.zeros(len(embeds), dtype=torch.long)
    cond = Conditioning(embeds, eos.to(embeds.device), attention_mask=mask)
    negative = _enhancer_negative(pipe, original, outputs, arguments, len(prompts) or len(embeds))
    if len(negative) > 1:
        negative = negative[torch.arange(len(negative)).repeat_interleave(per_prompt)]
    network = attachment.enhancer.network.to(embeds.device)  # it follows the embeddings (offloading moves them)
    enhanced = enhance_conditioning(network, cond, negative.to(embeds.device), attachment.alpha, attachment.part,
                                    embeds.dtype)
    out[outputs["prompt_embeds"]] = enhanced.prompt_embeds
    if mask is not None:
        out[outputs["attention_mask"]] = enhanced.attention_mask


# encode_prompt's arguments that carry the prompt's own text or embeddings, cleared to encode the negative instead
PROMPT_ARGUMENTS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds",
                    "prompt_attention_mask", "negative_prompt_attention_mask", "negative_prompt", "negative_prompt_2")


def _enhancer_negative(pipe, original, outputs: dict[str, int], arguments: dict, rows: int) -> "Conditioning":
    """The enhancer's second input: the call's negative prompt (else the empty one), encoded by the pipeline's own
    `encode_prompt` with the call's settings (lora_scale, clip_skip, prompt_2's counterpart, textual-inversion
    tokens), or the call's negative_prompt_embeds as given."""
    import torch

    from dicecli.families import Conditioning

    text = arguments.get("negative_prompt")
    if text is None and arguments.get("negative_prompt_embeds") is not None:
        embeds = arguments["negative_prompt_embeds"]
        mask = arguments.get("negative_prompt_attention_mask") if "attention_mask" in outputs else None
        return Conditioning(embeds, torch.zeros(len(embeds), dtype=torch.long), attention_mask=mask)
    texts = [text or ""] if text is None or isinstance(text, str) else [t or "" for t in text]
    if len(texts) not in (1, rows):
        raise UsageError(f"negative_prompt has {len(texts)} entries for {rows} prompts; give one, or one per prompt.")
    kwargs = {**arguments, **{name: None for name in PROMPT_ARGUMENTS if name in arguments}, "prompt": texts,
              "num_images_per_prompt": 1, "do_classifier_free_guidance": False}
    if "prompt_2" in arguments:
        kwargs["prompt_2"] = arguments.get("negative_prompt_2")
    out = original(pipe, **{k: v for k, v in kwargs.items() if k != "self"})
    mask = out[outputs["attention_mask"]] if "attention_mask" in outputs else None
    embeds = out[outputs["prompt_embeds"]]
    return Conditioning(embeds, torch.zeros(len(embeds), dtype=torch.long, device=embeds.device), attention_mask=mask)


def _end_of_text(adapter: "FamilyAdapter", prompts: list[str], per_prompt: int):
    """Each row's end-of-text position, from the family's tokenization hook (as its encoding finds it)."""
    return adapter.tokenize(prompts).eos_index.repeat_interleave(per_prompt)


def _marked(kwargs: dict) -> dict:
    """Mark enhanced embeddings, so that a pipeline with an enhancer attached refuses to enhance them again."""
    for value in kwargs.values():
        if hasattr(value, "shape"):
            setattr(value, ENHANCED_MARK, True)
    return kwargs


def detach(pipe: "DiffusionPipeline") -> None:
    """Remove an attached enhancer: the pipeline is exactly as before `attach` (its own `encode_prompt` again)."""
    if getattr(pipe, ATTACHMENT, None) is None:
        raise UsageError(f"{type(pipe).__name__} has no enhancer attached; nothing to detach.")
    for name in ("encode_prompt", ATTACHMENT):
        object.__delattr__(pipe, name)


# -- embedding caches -------------------------------------------------------------------------------------
@dataclass
class CachedEmbeddings:
    """An embedding cache (`dice encode` / `dice enhance`), read whole."""

    path: Path
    prompts: list[str]
    attributes: dict[str, Any]  # model, family, and for an enhanced cache the enhancer, its sha256 and alpha
    conditioning: "Conditioning" = field(repr=False)
    negative_prompt: str | None = None

    @property
    def enhanced(self) -> bool:
        return bool(self.attributes.get("enhancer"))

    def pipeline_kwargs(self, pipe: "DiffusionPipeline", rows: "slice | list[int] | None" = None) -> dict[str, "torch.Tensor"]:
        """The rows' embeddings as `pipe`'s call arguments (`prompt_embeds`, ...), on its device and dtype."""
        from dicecli.families import adapter_for_pipeline

        adapter = adapter_for_pipeline(pipe)
        if adapter.family != self.attributes.get("family"):
            raise IncompatibleError(f"{self.path} holds {self.attributes.get('family')} embeddings; the pipeline is "
                                    f"{adapter.family}.")
        cond = self.conditioning if rows is None else self.conditioning[rows]
        kwargs = adapter.pipeline_inputs(cond.to(adapter.device, adapter.dtype), None)
        return _marked(kwargs) if self.enhanced else kwargs


def read_cache(path: str | Path) -> CachedEmbeddings:
    """Read an embedding cache, checked as every command checks it (shapes, counts, finite numbers)."""
    from dicecli.preparation import read_input

    data = read_input(str(path))
    if not data.is_cache:
        raise UsageError(f"{path} is not an embedding cache; give a .h5 file from `dice encode` or `dice enhance`.")
    return CachedEmbeddings(Path(path), data.prompts, dict(data.attrs), data.cond, data.stored_negative)


def write_cache(path: str | Path, prompts: list[str], model: str, *, enhancer: str | Path | None = None,
                negative_prompt: str | None = None, alpha: float | None = None, device: str = "auto",
                dtype: str = "auto") -> CachedEmbeddings:
    """Encode `prompts` with `model` (a recipe name, hub id, diffusers folder or .safetensors file) into the cache
    at `path`, as `dice encode` does (appending only new prompts), or, with `enhancer`, write an enhanced cache
    as `dice enhance` does; returns the cache read back."""
    import tempfile

    from dicecli.encode import encode_prompts
    from dicecli.enhance import enhance
    from dicecli.refs import resolve_model
    from dicecli.runtime import Runtime, select_device, select_dtype
    from dicecli.settings import EncodeConfig, SampleOptions

    torch_device = select_device(device)
    torch_dtype = select_dtype(dtype, torch_device)
    if enhancer is None:
        runtime = Runtime(torch_device, torch_dtype, EncodeConfig.batch_size)
        encode_prompts(list(prompts), resolve_model(model), str(path), runtime, negative_prompt)
    else:
        with tempfile.TemporaryDirectory(prefix="dicecli-api-") as folder:
            listed = Path(folder) / "prompts.txt"
            listed.write_text("".join(p.replace("\n", " ") + "\n" for p in prompts), encoding="utf-8")
            options = SampleOptions(model=model, enhancer=str(enhancer), alpha=alpha, negative=negative_prompt)
            enhance(str(listed), str(path), options, Runtime(torch_device, torch_dtype))
    return read_cache(path)
