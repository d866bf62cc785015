"""`dice inspect`: what an enhancer changes in the embeddings, part by part (the paper's section 4.3).

A text embedding splits at the end-of-text token: the semantic part (the prompt's own tokens through the
end-of-text token; under PixArt-α's mask exactly the masked-in tokens) and the padding part (the rest). For
each prompt, part and text encoder (SDXL: the 768 and 1280 columns separately) this reports the cosine
similarity of the original and enhanced part, each flattened to one vector, and the relative change
|c' - c| / |c|; then mean and standard deviation over prompts, and the profile per token position.
A start-of-text token the enhancer never changes (CLIP's) is left out of the semantic part; SDXL's pooled
embedding is checked to be untouched; where the enhanced embedding keeps the prompt's attention mask
(PixArt-α), what the enhancer writes into the padding never reaches the denoiser, and the report says so.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dicecli.analysis import EnhancedPrompts, enhance_prompts, output_paths, prepare_analysis
from dicecli.files import atomic_path
from dicecli.preparation import read_input
from dicecli.runtime import Runtime
from dicecli.settings import SampleOptions

if TYPE_CHECKING:
    from dicecli.analysis.pca import PcaReport

PARTS = ("semantic", "padding")
SUFFIXES = (".json", ".csv", "-positions.csv", ".png")
PCA_SUFFIX = "-pca.png"


@dataclass
class PartSummary:
    encoder: str  # "" for one text encoder; SDXL: text_encoder, text_encoder_2
    part: str
    cosine_mean: float
    cosine_std: float
    change_mean: float  # |c' - c| / |c|
    change_std: float
    reaches_denoiser: bool


@dataclass
class InspectReport:
    model: str
    family: str
    enhancer: str
    alpha: float
    negative: str
    prompts: int
    summary: list[PartSummary]
    pooled_unchanged: bool | None  # SDXL's pooled embedding (None where the family has none)
    per_prompt: list[dict] = field(repr=False)
    positions: list[dict] = field(repr=False)
    outputs: list[str] = field(default_factory=list)
    pca: "PcaReport | None" = None  # with --pca (`dicecli.analysis.pca`)


def part_masks(data: EnhancedPrompts) -> dict[str, torch.Tensor]:
    """[N, T] bool masks of the semantic and the padding part (the first token left out where the enhancer keeps it)."""
    semantic = data.cond.semantic_positions()
    padding = ~semantic
    if data.enhancer.keep_first_token:
        semantic = semantic.clone()
        semantic[:, 0] = False
    return {"semantic": semantic, "padding": padding}


def analyse(data: EnhancedPrompts) -> tuple[list[dict], list[dict], list[PartSummary]]:
    c, e = data.cond.prompt_embeds.float(), data.enhanced.prompt_embeds.float()
    masks = part_masks(data)
    text = data.adapter.text
    widened = data.enhanced.attention_mask is not None and bool(data.enhanced.attention_mask.all())
    per_prompt = [{"prompt": p, "semantic_tokens": int(masks["semantic"][i].sum())} for i, p in enumerate(data.prompts)]
    summary, positions = [], [{"position": t} for t in range(c.shape[1])]
    for encoder, columns in text.width_sections():
        cs, es = c[..., columns], e[..., columns]
        prefix = f"{encoder}." if encoder else ""
        for part in PARTS:
            mask = masks[part][..., None].to(cs.dtype)
            a, b = (cs * mask).flatten(1), (es * mask).flatten(1)
            empty = mask.flatten(1).sum(1) == 0  # a prompt that fills every token has no padding
            cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
            change = (b - a).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)
            for i, row in enumerate(per_prompt):
                row[f"{prefix}{part}_cosine"] = None if empty[i] else round(cosine[i].item(), 6)
                row[f"{prefix}{part}_change"] = None if empty[i] else round(change[i].item(), 6)
            kept = ~empty
            reaches = part == "semantic" or not text.mask or widened
            summary.append(PartSummary(encoder, part, _mean(cosine[kept]), _std(cosine[kept]), _mean(change[kept]),
                                       _std(change[kept]), reaches))
        token_cos = torch.nn.functional.cosine_similarity(cs, es, dim=-1)  # [N, T]
        token_change = (es - cs).norm(dim=-1) / cs.norm(dim=-1).clamp_min(1e-12)
        semantic_share = masks["semantic"].float().mean(0)
        for t, row in enumerate(positions):
            row[f"{prefix}cosine"] = round(token_cos[:, t].mean().item(), 6)
            row[f"{prefix}change"] = round(token_change[:, t].mean().item(), 6)
            row["semantic_share"] = round(semantic_share[t].item(), 6)
    return per_prompt, positions, summary


def _mean(x: torch.Tensor) -> float:
    return round(x.mean().item(), 6) if len(x) else float("nan")


def _std(x: torch.Tensor) -> float:
    return round(x.std(unbiased=False).item(), 6) if len(x) else float("nan")


def inspect_enhancer(source: str, output: Path | None, options: SampleOptions, runtime: Runtime,
                     pca: bool = False) -> InspectReport:
    """Compare original and enhanced embeddings (`options.enhancer`) of every prompt of SOURCE; write OUTPUT.json,
    .csv, -positions.csv and .png when OUTPUT is given; with `pca`, their principal components too (OUTPUT-pca.png)."""
    from dicecli.analysis.pca import pca_report, plot as plot_pca
    from dicecli.errors import UsageError

    paths = output_paths(output, SUFFIXES + ((PCA_SUFFIX,) if pca else ()))
    data = read_input(source)
    if pca and len(data.prompts) < 3:
        raise UsageError(f"--pca needs at least 3 prompts; {source} holds {len(data.prompts)}.")
    prepared = prepare_analysis(data, options, paths)
    prepared_data = enhance_prompts(prepared, runtime)
    per_prompt, positions, summary = analyse(prepared_data)
    pooled = None
    if prepared_data.cond.pooled_prompt_embeds is not None:
        pooled = bool(torch.equal(prepared_data.cond.pooled_prompt_embeds, prepared_data.enhanced.pooled_prompt_embeds))
    p = prepared_data.prepared
    report = InspectReport(p.ref.given, p.ref.family, p.enhancer.name, float(p.alpha), p.negative, len(per_prompt),
                           summary, pooled, per_prompt, positions)
    if pca:
        report.pca = pca_report(prepared_data.cond.prompt_embeds, prepared_data.enhanced.prompt_embeds)
    if output:
        write(report, output)
        if pca:
            plot_pca(report.pca, f"{report.enhancer} on {report.model}: principal components of {report.prompts} "
                                 "prompts' embeddings", output.with_name(output.name + PCA_SUFFIX))
        report.outputs = [str(path) for path in paths]
    return report


def write(report: InspectReport, base: Path) -> None:
    def table(rows: list[dict]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    files = {".json": json.dumps(asdict(report), indent=1), ".csv": table(report.per_prompt),
             "-positions.csv": table(report.positions)}
    for suffix, text in files.items():
        with atomic_path(base.with_name(base.name + suffix)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    plot(report, base.with_name(base.name + ".png"))


def plot(report: InspectReport, path: Path) -> None:
    """Cosine and relative change per token position, with the share of prompts whose semantic part covers it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoders = [s.encoder for s in report.summary if s.part == "semantic"]
    x = [row["position"] for row in report.positions]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for encoder in encoders:
        prefix = f"{encoder}." if encoder else ""
        label = encoder or "embedding"
        axes[0].plot(x, [row[f"{prefix}cosine"] for row in report.positions], label=label)
        axes[1].plot(x, [row[f"{prefix}change"] for row in report.positions], label=label)
    for ax, name in zip(axes, ("cosine(original, enhanced)", "|c' - c| / |c|")):
        ax.fill_between(x, 0, [row["semantic_share"] for row in report.positions], color="0.85", step="mid",
                        label="share of prompts: semantic part")
        ax.set_xlabel("token position")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report.enhancer} on {report.model} (alpha {report.alpha:g}, {report.prompts} prompts)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def summary_table(report: InspectReport) -> str:
    lines = ["| text encoder | part | cosine (mean ± std) | relative change (mean ± std) | reaches the denoiser |",
             "|---|---|---|---|---|"]
    for s in report.summary:
        lines.append(f"| {s.encoder or '–'} | {s.part} | {s.cosine_mean:.3f} ± {s.cosine_std:.3f} | "
                     f"{s.change_mean:.3f} ± {s.change_std:.3f} | {'yes' if s.reaches_denoiser else 'no (masked out)'} |")
    if report.pooled_unchanged is not None:
        lines.append(f"\npooled embedding unchanged: {'yes' if report.pooled_unchanged else 'NO'}")
    if report.pca is not None:
        pca = report.pca
        lines += [f"\n| principal components ({pca.prompts} prompts) | top {pca.top} explain | components to "
                  f"{100 * pca.share:.0f} % |", "|---|---|---|"]
        lines += [f"| {name} | {100 * s.explained_top:.1f} % | {s.components_to_share} |"
                  for name, s in (("original", pca.original), ("enhanced", pca.enhanced))]
    return "\n".join(lines) + "\n"
