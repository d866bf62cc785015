"""`dice sample`: embeddings or prompts -> a sample folder, unguided, CFG, DICE, or DICE + CFG."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dicecli.cache import EmbeddingCache
from dicecli.encode import unique
from dicecli.enhancer import check_compatible, file_sha256, load_enhancer, read_metadata
from dicecli.errors import UsageError
from dicecli.families import Conditioning, load_adapter
from dicecli.prompts import open_input, read_prompts
from dicecli.recipes import resolve_model
from dicecli.sampling import SampleJob, SampleSettings, make_scheduler


def resolve_source(source: str | None) -> str:
    """No INPUT: read standard input when something is piped in, else say what is needed."""
    if source is not None:
        return source
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(NEEDS_INPUT)
    return "-"


NEEDS_INPUT = ("dice sample needs INPUT: an embedding cache (.h5), a prompts file with --model, "
               "or a cache or prompts piped to standard input.")


def prepare_job(source: str | None, *, model: str | None, enhancer: Path | None, alpha: float | None, cfg: float,
                negative: str | None, steps: int | None, scheduler: str | None, seed: int, height: int | None,
                width: int | None, num_per_prompt: int, device: torch.device, dtype: torch.dtype) -> SampleJob:
    if cfg < 1:
        raise UsageError("--cfg must be at least 1 (1 = unguided, one model evaluation per step).")
    if num_per_prompt < 1:
        raise UsageError("--num-per-prompt must be at least 1.")
    meta = read_metadata(enhancer) if enhancer else None
    kind, path = open_input(resolve_source(source))
    if source is None and path is not None and path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        raise UsageError(NEEDS_INPUT)
    stored_negative, stored_neg_cond, enhanced_by = None, None, None
    if kind == "cache":
        with EmbeddingCache(path) as cache:
            attrs = cache.attrs
            prompts, cond = cache.prompts, cache.conditioning()
            if cache.negative_prompts:
                stored_negative, stored_neg_cond = cache.negative_prompts[0], cache.conditioning([0], prefix="negative_")
        if source in (None, "-"):
            path.unlink(missing_ok=True)  # the spooled standard input
        if attrs.get("enhancer"):
            if enhancer:
                raise UsageError(f"{source} is already enhanced (with {attrs['enhancer']}); drop --enhancer or sample the plain cache.")
            if negative is not None:
                raise UsageError(f"{source} was enhanced with the negative prompt {stored_negative!r}; give --negative to `dice enhance` instead.")
            enhanced_by = (attrs["enhancer"], attrs.get("enhancer_sha256"), float(attrs["alpha"]))
        ref = resolve_model(model or attrs["model"])
        if ref.family != attrs["family"]:
            raise UsageError(f"{source} holds {attrs['family']} embeddings; --model {ref.given} is {ref.family}.")
    else:
        try:
            prompts = unique(read_prompts(str(path), name="standard input") if path else read_prompts(source))
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if model is None and meta is None:
            raise UsageError("Sampling a prompts file needs --model (or an --enhancer, whose trained_on model is used).")
        ref = resolve_model(model or meta["trained_on"])
        cond = None
    if meta:
        check_compatible(meta, enhancer, family=ref.family, model=ref.given)

    defaults = ref.defaults("sample")
    adapter = load_adapter(ref, device, dtype)
    adapter.require(*adapter.pipeline_components)
    if cond is None:
        cond = Conditioning.cat([adapter.encode(prompts[i : i + 64]).conditioning for i in range(0, len(prompts), 64)])
    if negative is not None:
        negative_text, neg_cond = negative, adapter.encode([negative]).conditioning
    elif stored_negative is not None:
        negative_text, neg_cond = stored_negative, stored_neg_cond
    else:
        negative_text, neg_cond = "", adapter.encode([""]).conditioning
    neg_cond = neg_cond.to(device)
    cond = cond.to(device)

    if enhancer:
        check_compatible(meta, enhancer, family=ref.family, context_dim=adapter.context_dim, tokens=adapter.tokens, model=ref.given)
        net, _ = load_enhancer(enhancer, device)
        used_alpha = 1.0 if alpha is None else alpha
        with torch.no_grad():
            cond = cond.with_embeds(net(cond.prompt_embeds, neg_cond.prompt_embeds, used_alpha, neg_cond.attention_mask))
        enhanced_by = (Path(enhancer).name, file_sha256(enhancer), used_alpha)
    elif alpha is not None and enhanced_by is None:
        raise UsageError("--alpha needs --enhancer (or an enhanced cache from `dice enhance`).")

    scheduler = scheduler or defaults.get("scheduler", "dpmsolver++")
    make_scheduler(scheduler, adapter.scheduler.config)  # validate the name before any work
    size = adapter.default_size()
    settings = SampleSettings(
        model=ref.given, family=ref.family, enhancer=enhanced_by[0] if enhanced_by else None,
        enhancer_sha256=enhanced_by[1] if enhanced_by else None, alpha=enhanced_by[2] if enhanced_by else None,
        cfg=float(cfg), negative_prompt=negative_text, steps=steps or defaults.get("steps", 20), scheduler=scheduler,
        seed=seed, height=height or defaults.get("height", size), width=width or defaults.get("width", size),
        num_per_prompt=num_per_prompt,
    )
    return SampleJob(adapter, prompts, cond.to(device, dtype), neg_cond.to(device, dtype), settings)
