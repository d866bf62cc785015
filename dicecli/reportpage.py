"""The evaluation's page to look at: one self-contained HTML file beside `dice eval`'s table.

The paper's evidence is pictures, so the page holds the metrics table, the NFE and alpha curves, any figures
made by the analyses (`dice attention`, `dice inspect`, a sweep's grid), and per prompt the images of every
folder side by side (unguided / DICE / CFG / partial enhancement / other models). Everything is embedded as
data URIs (thumbnails, never full-size copies), and each thumbnail links to its full image by a relative
path, so the page opens from disk with no server and moves with its folders. No scripts.
"""

from __future__ import annotations

import base64
import html
import io
import os
import urllib.parse
from pathlib import Path

from PIL import Image

from dicecli.samplefolder import read_folder

THUMBNAIL = 192  # pixels, the longer side of a sample's thumbnail
FIGURE_WIDTH = 1100  # figures are scaled down to this width at most
PAGE_PROMPTS = 12  # prompts shown by default

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.samples td { vertical-align: top; } .samples img { display: block; }
.prompt { max-width: 260px; } .note { color: #8a5a00; } figure { margin: 12px 0; } figcaption { color: #555; }
"""


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=fmt, quality=85) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def thumbnail(path: Path, size: int = THUMBNAIL) -> str:
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        return data_uri(image)


def figure(path: Path) -> str:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > FIGURE_WIDTH:
            image = image.resize((FIGURE_WIDTH, round(image.height * FIGURE_WIDTH / image.width)), Image.Resampling.LANCZOS)
        return data_uri(image, "PNG")


def column_title(row: dict) -> str:
    """A folder's column: its method, and what tells it apart (strength, part, model)."""
    title = str(row.get("method") or "")
    if row.get("cfg") and row["cfg"] > 1:
        title += f" w={row['cfg']:g}"
    if row.get("alpha") is not None:
        title += f" α={row['alpha']:g}"
    if row.get("part"):
        title += f" ({row['part']} only)"
    if row.get("steps"):
        title += f", {row['steps']} steps"
    return title


def value_text(value) -> str:
    """A report value as the table shows it (Markdown and the page alike): – for none, 2 decimals, or 2 significant
    digits below 0.01 (a tiny-random FID of 0.0015 must not read 0.00)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


def cell(value) -> str:
    return html.escape(value_text(value))


def write_page(report, columns: list[tuple[str, str]], path: Path, figures: list[Path] = (),
               prompts: int = PAGE_PROMPTS) -> None:
    """Write the page for an `EvalReport` (its rows name the folders) to `path` (atomically)."""
    from dicecli.files import atomic_path

    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>dice eval report</title>", f"<style>{STYLE}</style></head><body>", "<h1>dice eval report</h1>"]
    settings = report.settings
    out.append(f"<p>Metrics: {html.escape(', '.join(settings.get('metrics', [])))}"
               + (f"; FID reference: {html.escape(str(settings['ref']))}" if settings.get("ref") else "") + ".</p>")
    out += [f'<p class="note">Note: {html.escape(note)}</p>' for note in report.notes]

    out.append("<h2>Metrics</h2><table><tr>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in columns) + "</tr>")
    for row in report.rows:
        out.append("<tr>" + "".join(f'<td class="{"num" if isinstance(row.get(k), (int, float)) else ""}">'
                                    f"{cell(row.get(k))}</td>" for k, _ in columns) + "</tr>")
    out.append("</table>")

    shown = [(name, Path(p)) for name, p in sorted(report.plots.items())] + [(Path(f).name, Path(f)) for f in figures]
    if shown:
        out.append("<h2>Figures</h2>")
        for name, file in shown:
            out.append(f'<figure><img src="{figure(file)}" alt="{html.escape(name)}"><figcaption>'
                       f"{html.escape(name)}</figcaption></figure>")

    out += samples_table(report.rows, path.parent, prompts)
    out.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(out), encoding="utf-8")


def samples_table(rows: list[dict], here: Path, prompts: int) -> list[str]:
    """Per prompt, each folder's first image of it (by the prompt's text where folders have prompts, else by
    position), as thumbnails linking to the full images."""
    contents = [read_folder(Path(row["folder"])) for row in rows]
    order = next((c.prompts for c in contents if any(c.prompts)), contents[0].prompts)
    chosen = list(dict.fromkeys(order))[:prompts]
    if not chosen:
        return []
    out = ["<h2>Samples</h2>", '<table class="samples"><tr><th>prompt</th>'
           + "".join(f"<th>{html.escape(column_title(r))}<br><small>{html.escape(Path(r['folder']).name)}</small></th>"
                     for r in rows) + "</tr>"]
    for position, prompt in enumerate(chosen):
        cells = []
        for c in contents:
            index = c.prompts.index(prompt) if prompt in c.prompts else (position if not any(c.prompts) else None)
            if index is None or index >= len(c.images):
                cells.append("<td>–</td>")
                continue
            image = c.images[index]
            link = urllib.parse.quote(Path(os.path.relpath(image, here)).as_posix())  # `exp #3/` is a path, not a fragment
            cells.append(f'<td><a href="{html.escape(link)}"><img src="{thumbnail(image)}" '
                         f'alt="{html.escape(image.name)}"></a></td>')
        out.append(f'<tr><td class="prompt">{html.escape(prompt) or "–"}</td>' + "".join(cells) + "</tr>")
    out.append("</table>")
    return out
