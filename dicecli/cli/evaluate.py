"""`dice eval` and `dice fid-stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from dicecli.cli.app import app, devices, info, report
from dicecli.cli.options import DeviceOption, FidFeatures, FidFeaturesOption, JsonOption, QuietOption, ReportFormat
from dicecli.settings import EvalConfig


@app.command("eval")
def eval_command(
    folders: Annotated[List[str], typer.Argument(metavar="FOLDER...", help="Sample folders from `dice sample`.")],
    ref: Annotated[Optional[str], typer.Option("--ref", help="FID reference: an image folder or statistics from `dice fid-stats`.")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Comma-separated: fid, clip, aesthetic, and those plug-ins add; the shipped plug-in adds an offline one, alignment and FID in its world of shapes (docs/toyworld.md) (default: clip,aesthetic, and fid with --ref).")] = None,
    fid_features: FidFeaturesOption = FidFeatures.inception,
    clip_model: Annotated[Optional[str], typer.Option("--clip-model", help=f"CLIP model for the CLIP score (default: {EvalConfig.default('clip_model')}).")] = None,
    aesthetic_clip: Annotated[Optional[str], typer.Option("--aesthetic-clip", help=f"CLIP under the aesthetic predictor (default: {EvalConfig.default('aesthetic_clip')}).")] = None,
    aesthetic_weights: Annotated[Optional[str], typer.Option("--aesthetic-weights", help="LAION aesthetic predictor weights: a .pth/.safetensors path, or REPO_ID:FILE in the hub cache.")] = None,
    output_format: Annotated[ReportFormat, typer.Option("--format", help="What to print: table (Markdown), json or csv.")] = ReportFormat.table,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write REPORT.json, REPORT.md, REPORT.csv, REPORT.html (the page to look at) and the curves REPORT-nfe.png, REPORT-alpha.png, REPORT-step.png (checkpoints).")] = None,
    figure: Annotated[Optional[List[str]], typer.Option("--figure", help="A figure to show on REPORT.html (repeat): e.g. from `dice attention` or `dice inspect`.")] = None,
    page_prompts: Annotated[int, typer.Option("--page-prompts", min=0, help="Prompts shown side by side on REPORT.html.")] = 12,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr (they stay in the report files); the table is still printed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (the same as --format json).")] = False,
) -> None:
    """FID, CLIP score and aesthetic score of sample folders, as the paper's Table 1 (and Figure 5 across step counts)."""
    from dicecli.evaluate import (check_figures, check_report_output, csv_text, evaluate, json_text, markdown_table,
                                  write_report)

    figures = [Path(f) for f in figure or []]
    if output:
        check_report_output(Path(output), [Path(f) for f in folders] + ([Path(ref)] if ref else []) + figures)
    check_figures(figures)

    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else ["clip", "aesthetic"] + (["fid"] if ref else [])
    config = EvalConfig.resolve(None, clip_model=clip_model, aesthetic_clip=aesthetic_clip, fid_features=fid_features.value)
    result = evaluate([Path(f) for f in folders], ref=ref, metrics=chosen, fid_features=config.fid_features,
                      clip_model=config.clip_model, aesthetic_clip=config.aesthetic_clip,
                      aesthetic_weights=aesthetic_weights, device=devices(device, "fp32")[0])
    if result is None:
        return  # one of several processes: the main one reports
    for note in result.notes:
        info(f"note: {note}", quiet)
    if output:
        write_report(result, Path(output), figures, page_prompts)
    printers = {"table": markdown_table, "json": json_text, "csv": csv_text}
    typer.echo(printers["json" if as_json else output_format.value](result), nl=False)


@app.command("fid-stats")
def fid_stats_command(
    folder: Annotated[str, typer.Argument(metavar="FOLDER", help="Reference images (e.g. COCO 2017 val resized), or a sample folder.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Statistics file (.npz) for `dice eval --ref`.")] = ...,
    fid_features: FidFeaturesOption = FidFeatures.inception,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Compute and save FID reference statistics (mean and covariance of the features) of an image folder."""
    from dicecli.evaluate import save_folder_statistics

    count = save_folder_statistics(Path(folder), Path(output), fid_features.value, devices(device, "fp32")[0])
    report({"output": output, "images": count, "features": fid_features.value}, as_json,
           f"{output}: FID statistics of {count} images ({fid_features.value} features).", quiet)
