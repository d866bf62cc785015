"""`dice enhance`: prompts or an embedding cache -> enhanced embedding cache (text encoder only)."""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dicecli import faults
from dicecli.cache import EMBEDDINGS_FORMAT, CacheWriter, EmbeddingCache, new_header, storage_dtype
from dicecli.enhancer import check_compatible, file_sha256, load_enhancer, read_metadata
from dicecli.errors import IncompatibleError, UsageError
from dicecli.families import Conditioning, adapter_class, load_adapter
from dicecli.files import STDIO, atomic_path, check_writable, stream_to_stdout
from dicecli.method import apply_enhancer
from dicecli.prompts import open_input, read_prompts, unique
from dicecli.refs import resolve_model
from dicecli.settings import sample_settings


@dataclass
class EnhanceResult:
    output: str
    model: str
    enhancer: str
    alpha: float
    negative: str
    prompts: int

    def as_dict(self) -> dict:
        return asdict(self)


def enhance(source: str, output: str, enhancer_path: Path, *, model: str | None, alpha: float | None,
            negative: str | None, batch_size: int, device: torch.device, dtype: torch.dtype,
            progress: bool = False) -> EnhanceResult:
    meta = read_metadata(enhancer_path)
    if alpha is not None and not math.isfinite(alpha):
        raise UsageError(f"--alpha {alpha} must be a finite number (1 = the enhancer as trained).")
    if output != STDIO:
        check_writable(Path(output))
        if source != STDIO and Path(source).exists() and Path(source).resolve() == Path(output).resolve():
            raise UsageError(f"-o {output} is the input itself; write the enhanced cache to another file.")
    kind, path = open_input(source)
    spooled = path if source == STDIO else None
    try:
        if kind == "cache":
            with EmbeddingCache(path) as cache:
                attrs = dict(cache.attrs)
                check_compatible(meta, enhancer_path, family=attrs["family"], context_dim=int(attrs["context_dim"]),
                                 tokens=int(attrs["tokens"]), model=f"the embeddings in {source}")
                if attrs.get("enhancer"):
                    raise UsageError(f"{source} is already enhanced (with {attrs['enhancer']}); enhance the plain cache from `dice encode`.")
                prompts = cache.prompts
                cond = cache.conditioning()
                stored_negative = cache.negative_prompts
                stored_neg_cond = cache.conditioning(prefix="negative_") if stored_negative else None
            ref = resolve_model(model or attrs["model"])
        else:
            prompts = unique(read_prompts(str(spooled), name="standard input") if spooled else read_prompts(source))
            ref = resolve_model(model or meta["trained_on"])
            cond, stored_negative, stored_neg_cond, attrs = None, [], None, None
    finally:
        if spooled is not None:  # read into memory above; a spooled stdin never outlives the read
            spooled.unlink(missing_ok=True)

    check_compatible(meta, enhancer_path, family=ref.family, model=ref.given)
    alpha = sample_settings(ref.family, ref.recipe, alpha=alpha)["alpha"]
    text = adapter_class(ref.family).text_without_weights(ref)
    check_compatible(meta, enhancer_path, family=ref.family, context_dim=text.width, tokens=text.tokens, model=ref.given)
    adapter = load_adapter(ref, device, dtype)  # only the text encoder is ever loaded below
    fingerprint = adapter.text_encoder_fingerprint()
    if attrs is not None and attrs["text_encoder_fingerprint"] != fingerprint:
        raise IncompatibleError(
            f"{source} was encoded with {attrs['model']}, whose text encoder differs from {ref.given}'s; "
            f"drop --model or pass --model {attrs['model']}."
        )
    enhancer, _ = load_enhancer(enhancer_path, device)
    if negative is None and stored_negative:
        negative_text, neg_cond = stored_negative[0], stored_neg_cond[[0]].to(device)
    else:
        negative_text = negative or ""
        neg_cond = adapter.negative(negative_text)

    header = new_header(
        EMBEDDINGS_FORMAT, family=ref.family, model=attrs["model"] if attrs else ref.given,
        model_resolved=attrs["model_resolved"] if attrs else ref.resolved, fingerprint=fingerprint,
        dtype=storage_dtype(dtype) if attrs is None else attrs["dtype"], tokens=text.tokens, context_dim=text.width,
    )
    header.update(enhancer=Path(enhancer_path).name, enhancer_sha256=file_sha256(enhancer_path), alpha=float(alpha),
                  enhancer_trained_on=str(meta.get("trained_on", "")))

    def write(tmp: Path) -> None:
        with CacheWriter(tmp, header) as writer:
            if cond is None:
                batches = ((b, e.conditioning) for b, e in adapter.encode_batches(prompts, batch_size, progress, "enhance"))
            else:
                batches = _slices(prompts, cond, batch_size, progress)
            negative_fp32 = neg_cond.to(dtype=torch.float32)
            for batch, batch_cond in batches:
                with torch.no_grad():
                    enhanced = apply_enhancer(enhancer, batch_cond.to(device, torch.float32), negative_fp32, alpha)
                writer.append(batch, enhanced)
                faults.point("enhance.batch")
            writer.append([negative_text], neg_cond, prefix="negative_")

    if output == STDIO:
        with tempfile.TemporaryDirectory(prefix="dice-enhance-") as folder:
            tmp = Path(folder) / "out.h5"
            write(tmp)
            stream_to_stdout(tmp)
    else:
        with atomic_path(Path(output)) as tmp:
            write(tmp)
    return EnhanceResult(output, ref.given, str(enhancer_path), float(alpha), negative_text, len(prompts))


def _slices(prompts: list[str], cond: Conditioning, batch_size: int, progress: bool):
    with tqdm(total=len(prompts), unit="prompt", desc="enhance", disable=not progress, leave=False) as bar:
        for start in range(0, len(prompts), batch_size):
            yield prompts[start : start + batch_size], cond[start : start + batch_size]
            bar.update(min(batch_size, len(prompts) - start))
