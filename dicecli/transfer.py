"""`dice transfer`: apply enhancers to other models of their family (the paper's cross-model experiment)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dicecli.enhancer import check_compatible, file_sha256, load_enhancer, read_metadata
from dicecli.errors import UsageError
from dicecli.families import adapter_class, load_adapter
from dicecli.files import atomic_path
from dicecli.method import apply_enhancer
from dicecli.prompts import read_prompts, unique
from dicecli.refs import ModelRef, resolve_model
from dicecli.sampling import SampleJob, SampleSettings, check_numbers, image_grid, make_scheduler, run_job
from dicecli.settings import sample_settings

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
        family = adapter_class(ref.family, f"--to {ref.given}")
        for meta, path in zip(metas, enhancers):
            check_compatible(meta, path, family=ref.family, model=ref.given)  # family first: no config read
        text = family.text_without_weights(ref)
        for meta, path in zip(metas, enhancers):
            check_compatible(meta, path, family=ref.family, context_dim=text.width, tokens=text.tokens, model=ref.given)
    return metas, refs


def transfer(enhancers: list[Path], targets: list[str], source: str, output: Path, *, alpha: float | None, cfg: float,
             negative: str | None, steps: int | None, scheduler: str | None, seed: int, batch_size: int,
             height: int | None, width: int | None, num_per_prompt: int, device: torch.device, dtype: torch.dtype,
             progress: bool = False) -> TransferResult:
    if not enhancers or not targets:
        raise UsageError("dice transfer needs at least one ENHANCER and one --to MODEL.")
    check_numbers(cfg=cfg, alpha=alpha, height=height, width=width, steps=steps, num_per_prompt=num_per_prompt)
    metas, refs = check_all(enhancers, targets)
    prompts = unique(read_prompts(source))
    output.mkdir(parents=True, exist_ok=True)
    folders, rows, report = [], [], []
    for ref in refs:
        chosen = sample_settings(ref.family, ref.recipe, steps=steps, scheduler=scheduler, alpha=alpha, height=height,
                                 width=width)
        adapter = load_adapter(ref, device, dtype)
        make_scheduler(chosen["scheduler"], adapter.scheduler.config)
        adapter.require(*adapter.pipeline_components)
        cond = adapter.encode_all(prompts).to(device)
        neg_text = negative or ""
        neg = adapter.negative(neg_text)
        cfg_neg = adapter.unconditional(neg_text)
        size = adapter.default_size()
        base = SampleSettings(
            model=ref.given, family=ref.family, enhancer=None, enhancer_sha256=None, alpha=None, cfg=float(cfg),
            negative_prompt=neg_text, steps=chosen["steps"], scheduler=chosen["scheduler"], seed=seed,
            height=chosen["height"] or size, width=chosen["width"] or size, num_per_prompt=num_per_prompt,
        )
        target_dir = output / slug(ref.given)
        columns = [run_job(SampleJob(adapter, prompts, cond, cfg_neg, base), target_dir / "unguided", batch_size, progress)]
        for path, meta in zip(enhancers, metas):
            enhancer, _ = load_enhancer(path, device)
            with torch.no_grad():
                enhanced = apply_enhancer(enhancer, cond, neg, chosen["alpha"])
            settings = replace(base, enhancer=path.name, enhancer_sha256=file_sha256(path), alpha=float(chosen["alpha"]))
            columns.append(run_job(SampleJob(adapter, prompts, enhanced, cfg_neg, settings), target_dir / slug(path.name),
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
            source_cond = source_adapter.encode_all(prompts).to(device)
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
