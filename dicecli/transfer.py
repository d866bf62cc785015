"""`dice transfer`: apply enhancers to other models of their family (the paper's cross-model experiment)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
import torch.nn.functional as F

from dicecli import distributed
from dicecli.errors import UsageError
from dicecli.families import load_adapter
from dicecli.files import atomic_path, check_output
from dicecli.preparation import InputData, open_enhancer, prepare, read_input
from dicecli.refs import resolve_model
from dicecli.samplefolder import image_name, safe_name
from dicecli.sampling import image_grid, make_job, open_image, run_job
from dicecli.runtime import Runtime
from dicecli.settings import SampleOptions

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
    return safe_name(name) or "model"


def transfer(enhancers: list[str], targets: list[str], source: str, output: Path, options: SampleOptions,
             runtime: Runtime) -> TransferResult:
    """Every enhancer on every target model (`options.model` is not read: the targets are the models)."""
    if not enhancers or not targets:
        raise UsageError("dice transfer needs at least one ENHANCER and one --to MODEL.")
    options.check()
    chosen = [open_enhancer(e) for e in enhancers]
    group = distributed.current()
    data = read_input(source)
    if data.is_cache:  # each target encodes the prompts with its own text encoder
        data = InputData(data.name, data.path, data.prompts)
    # Every (target, enhancer) pair is prepared and checked from metadata and config files before any weights load.
    pairs = [[prepare(data, replace(options, model=target), e) for e in chosen] for target in targets]
    plain = [prepare(data, replace(options, model=target, alpha=None, part=None)) for target in targets]
    for prepared in (*plain, *(p for row in pairs for p in row)):
        check_output(output, prepared.input_paths, folder=True)
    output.mkdir(parents=True, exist_ok=True)
    folders, rows, row_titles, report = [], [], [], []
    device, dtype, batch_size, progress = runtime.device, runtime.dtype, runtime.batch_size, runtime.progress
    for base, row in zip(plain, pairs):
        ref = base.ref
        adapter = base.load(device, dtype)
        target_dir = output / slug(ref.given)
        columns = [run_job(make_job(base, options, runtime, adapter), target_dir / "unguided", batch_size, progress)]
        for prepared in row:
            job = make_job(prepared, options, runtime, adapter)
            columns.append(run_job(job, target_dir / slug(prepared.enhancer.name), batch_size, progress))
        folders += [c.output for c in columns]
        if group.main:  # the others' images are in place: each sample job ends when every process is done
            for p in range(min(GRID_PROMPTS, len(data.prompts))):
                rows.append([open_image(Path(c.output) / image_name(p * options.num_per_prompt)) for c in columns])
                row_titles.append(f"{slug(ref.given)}: {data.prompts[p]}")
            report.append(_compatibility(ref, adapter, base.conditioning(), [e.meta for e in chosen], data.prompts,
                                         device, dtype))
        for prepared in (base, *row):
            prepared.adapter = None  # one target's model in memory at a time
        del adapter
    grid_path = output / "grid.png"
    if not group.main:
        return TransferResult(str(output), folders, str(grid_path), [])
    titles = ["unguided"] + [slug(e.name) for e in chosen]
    with atomic_path(grid_path) as tmp:
        image_grid(rows, titles, row_titles).save(tmp, format="PNG")
    _write_report(output, report)
    return TransferResult(str(output), folders, str(grid_path), report)


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
