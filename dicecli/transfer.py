"""`dice transfer`: apply enhancers to other models of their family (the paper's cross-model experiment)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dicecli.encode import unique
from dicecli.enhancer import check_compatible, file_sha256, load_enhancer, read_metadata
from dicecli.errors import UsageError
from dicecli.families import ADAPTERS, Conditioning, load_adapter
from dicecli.files import atomic_path
from dicecli.prompts import read_prompts
from dicecli.recipes import ModelRef, resolve_model
from dicecli.sampling import SampleJob, SampleSettings, image_grid, make_scheduler, run_job

GRID_PROMPTS = 4


@dataclass
class TransferResult:
    output: str
    folders: list[str]
    grid: str
    compatibility: list[dict]


def slug(text: str) -> str:
    """A folder name for a model reference or enhancer file."""
    name = Path(text.rstrip("/")).name
    for suffix in (".safetensors", ".toml"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def check_all(enhancers: list[Path], targets: list[str]) -> tuple[list[dict], list[ModelRef]]:
    """Every (enhancer, target) pair is checked from metadata and config files, before any weights load."""
    metas = [read_metadata(path) for path in enhancers]
    refs = [resolve_model(target) for target in targets]
    for ref in refs:
        if ref.family not in ADAPTERS:
            raise UsageError(f"--to {ref.given} is of family {ref.family}, which this version of dicecli cannot run yet.")
        dim, tokens = ADAPTERS[ref.family].embedding_shape(ref)
        for meta, path in zip(metas, enhancers):
            check_compatible(meta, path, family=ref.family, context_dim=dim, tokens=tokens, model=ref.given)
    return metas, refs


def encode_all(adapter, prompts: list[str]) -> Conditioning:
    return Conditioning.cat([adapter.encode(prompts[i : i + 64]).conditioning for i in range(0, len(prompts), 64)])


def transfer(enhancers: list[Path], targets: list[str], source: str, output: Path, *, alpha: float, cfg: float,
             negative: str | None, steps: int | None, scheduler: str | None, seed: int, batch_size: int,
             height: int | None, width: int | None, num_per_prompt: int, device: torch.device, dtype: torch.dtype,
             progress: bool = False) -> TransferResult:
    if not enhancers or not targets:
        raise UsageError("dice transfer needs at least one ENHANCER and one --to MODEL.")
    metas, refs = check_all(enhancers, targets)
    prompts = unique(read_prompts(source))
    output.mkdir(parents=True, exist_ok=True)
    folders, rows, report = [], [], []
    for ref in refs:
        adapter = load_adapter(ref, device, dtype)
        adapter.require(*adapter.pipeline_components)
        cond = encode_all(adapter, prompts).to(device)
        neg_text = negative or ""
        neg = adapter.encode([neg_text]).conditioning.to(device)
        size = adapter.default_size()
        defaults = ref.defaults("sample")
        name = scheduler or defaults.get("scheduler", "dpmsolver++")
        make_scheduler(name, adapter.scheduler.config)
        base = SampleSettings(
            model=ref.given, family=ref.family, enhancer=None, enhancer_sha256=None, alpha=None, cfg=float(cfg),
            negative_prompt=neg_text, steps=steps or defaults.get("steps", 20), scheduler=name, seed=seed,
            height=height or defaults.get("height", size), width=width or defaults.get("width", size),
            num_per_prompt=num_per_prompt,
        )
        target_dir = output / slug(ref.given)
        columns = [run_job(SampleJob(adapter, prompts, cond, neg, base), target_dir / "unguided", batch_size, progress)]
        for path, meta in zip(enhancers, metas):
            enhancer, _ = load_enhancer(path, device)
            with torch.no_grad():
                enhanced = cond.with_embeds(enhancer(cond.prompt_embeds, neg.prompt_embeds, alpha, neg.attention_mask))
            settings = replace(base, enhancer=path.name, enhancer_sha256=file_sha256(path), alpha=float(alpha))
            columns.append(run_job(SampleJob(adapter, prompts, enhanced, neg, settings), target_dir / slug(path.name),
                                   batch_size, progress))
        folders += [c.output for c in columns]
        for p in range(min(GRID_PROMPTS, len(prompts))):
            rows.append([_open(Path(c.output) / f"{p * num_per_prompt:06d}.png") for c in columns])
        report.append(_compatibility(ref, adapter, cond, metas, prompts, device, dtype))
        del adapter
    grid_path = output / "grid.png"
    titles = ["unguided"] + [slug(p.name) for p in enhancers]
    with atomic_path(grid_path) as tmp:
        image_grid(rows, titles).save(tmp, format="PNG")
    _write_report(output, report)
    return TransferResult(str(output), folders, str(grid_path), report)


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _compatibility(ref, adapter, cond, metas, prompts, device, dtype) -> dict:
    """Mean cosine similarity, per token, between each source model's and this target's prompt embeddings."""
    entry = {"target": ref.given, "fingerprint": adapter.text_encoder_fingerprint(), "sources": []}
    for source in dict.fromkeys(str(m.get("trained_on", "")) for m in metas):
        row = {"source": source}
        try:
            source_ref = resolve_model(source)
            source_adapter = load_adapter(source_ref, device, dtype)
            source_cond = encode_all(source_adapter, prompts).to(device)
            cos = F.cosine_similarity(source_cond.prompt_embeds.float(), cond.prompt_embeds.float(), dim=-1)
            row.update(mean_cosine=round(cos.mean().item(), 4), same_text_encoder=source_adapter.text_encoder_fingerprint() == entry["fingerprint"])
        except UsageError as error:
            row.update(mean_cosine=None, note=f"source model not available here ({error})")
        entry["sources"].append(row)
    return entry


def _write_report(output: Path, report: list[dict]) -> None:
    with atomic_path(output / "compatibility.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    lines = ["| target | enhancer trained on | mean cosine (source vs target embeddings) | same text encoder |", "|---|---|---|---|"]
    for entry in report:
        for row in entry["sources"]:
            cosine = "n/a" if row["mean_cosine"] is None else f"{row['mean_cosine']:.4f}"
            lines.append(f"| {entry['target']} | {row['source']} | {cosine} | {row.get('same_text_encoder', 'n/a')} |")
    with atomic_path(output / "compatibility.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
