"""`dice sample`: embeddings or prompts -> a sample folder, unguided, CFG, DICE, or DICE + CFG."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dicecli.cache import EmbeddingCache
from dicecli.enhancer import check_compatible, file_sha256, load_enhancer, read_metadata
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import adapter_class, load_adapter
from dicecli.method import apply_enhancer
from dicecli.prompts import open_input, read_prompts, unique
from dicecli.refs import resolve_model
from dicecli.sampling import SampleJob, SampleSettings, check_numbers, make_scheduler
from dicecli.settings import sample_settings

NEEDS_INPUT = ("dice sample needs INPUT: an embedding cache (.h5), a prompts file with --model, "
               "or a cache or prompts piped to standard input.")


def resolve_source(source: str | None) -> str:
    """No INPUT: read standard input when something is piped in, else say what is needed."""
    if source is not None:
        return source
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(NEEDS_INPUT)
    return "-"


def prepare_job(source: str | None, *, model: str | None, enhancer: Path | None, alpha: float | None, cfg: float,
                negative: str | None, steps: int | None, scheduler: str | None, seed: int, height: int | None,
                width: int | None, num_per_prompt: int, device: torch.device, dtype: torch.dtype,
                vae: str | None = None) -> SampleJob:
    check_numbers(cfg=cfg, alpha=alpha, height=height, width=width, steps=steps, num_per_prompt=num_per_prompt)
    meta = read_metadata(enhancer) if enhancer else None
    kind, path = open_input(resolve_source(source))
    if source is None and path is not None and path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        raise UsageError(NEEDS_INPUT)
    stored_negative, stored_neg_cond, enhanced_by, cond = None, None, None, None
    if kind == "cache":
        try:
            with EmbeddingCache(path) as cache:
                attrs = cache.attrs
                prompts, cond = cache.prompts, cache.conditioning()
                if cache.negative_prompts:
                    stored_negative, stored_neg_cond = cache.negative_prompts[0], cache.conditioning([0], prefix="negative_")
        finally:
            if source in (None, "-"):
                path.unlink(missing_ok=True)  # the spooled standard input
        if attrs.get("enhancer"):
            if enhancer:
                raise UsageError(f"{source} is already enhanced (with {attrs['enhancer']}); drop --enhancer or sample the plain cache.")
            if negative is not None:
                raise UsageError(f"{source} was enhanced with the negative prompt {stored_negative!r}; give --negative to `dice enhance` instead.")
            enhanced_by = (attrs["enhancer"], attrs.get("enhancer_sha256"), float(attrs["alpha"]))
        ref = resolve_model(model or attrs["model"], vae=vae)
        if ref.family != attrs["family"]:
            raise IncompatibleError(f"{source} holds {attrs['family']} embeddings; --model {ref.given} is {ref.family}.")
        text = adapter_class(ref.family).text_without_weights(ref)
        if (int(attrs["tokens"]), int(attrs["context_dim"])) != (text.tokens, text.width):
            raise IncompatibleError(
                f"{source} holds {attrs['tokens']}x{attrs['context_dim']} embeddings but {ref.given} takes "
                f"{text.tokens}x{text.width}; encode the prompts with this model (`dice encode --model {ref.given}`)."
            )
    else:
        try:
            prompts = unique(read_prompts(str(path), name="standard input") if path else read_prompts(source))
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if model is None and meta is None:
            raise UsageError("Sampling a prompts file needs --model (or an --enhancer, whose trained_on model is used).")
        ref = resolve_model(model or meta["trained_on"], vae=vae)
    if meta:
        text = adapter_class(ref.family).text_without_weights(ref) if ref.family == meta.get("family") else None
        check_compatible(meta, enhancer, family=ref.family, context_dim=text and text.width,
                         tokens=text and text.tokens, model=ref.given)
    elif alpha is not None and enhanced_by is None:
        raise UsageError("--alpha needs --enhancer (or an enhanced cache from `dice enhance`).")

    chosen = sample_settings(ref.family, ref.recipe, steps=steps, scheduler=scheduler, alpha=alpha, height=height,
                             width=width)
    adapter = load_adapter(ref, device, dtype)
    make_scheduler(chosen["scheduler"], adapter.scheduler.config)  # validate the name before any work
    adapter.require(*adapter.pipeline_components)
    if cond is None:
        cond = adapter.encode_all(prompts)
    cond = cond.to(device)
    # The negative prompt: --negative, else the one stored with the embeddings, else none ("").
    negative_text = negative if negative is not None else (stored_negative or "")
    if negative is None and stored_neg_cond is not None:
        enhancer_negative = stored_neg_cond.to(device)
    else:
        enhancer_negative = adapter.negative(negative_text)
    cfg_negative = adapter.unconditional(negative_text) if not negative_text else enhancer_negative

    if enhancer:
        net, _ = load_enhancer(enhancer, device)
        with torch.no_grad():
            cond = apply_enhancer(net, cond, enhancer_negative, chosen["alpha"])
        enhanced_by = (Path(enhancer).name, file_sha256(enhancer), chosen["alpha"])

    size = adapter.default_size()
    settings = SampleSettings(
        model=ref.given, family=ref.family, enhancer=enhanced_by[0] if enhanced_by else None,
        enhancer_sha256=enhanced_by[1] if enhanced_by else None, alpha=enhanced_by[2] if enhanced_by else None,
        cfg=float(cfg), negative_prompt=negative_text, steps=chosen["steps"], scheduler=chosen["scheduler"],
        seed=seed, height=chosen["height"] or size, width=chosen["width"] or size, num_per_prompt=num_per_prompt,
    )
    return SampleJob(adapter, prompts, cond.to(device, dtype), cfg_negative.to(device, dtype), settings)
