"""`dice eval`: FID (clean-fid), CLIP score and aesthetic score of sample folders, with reports.

Every model is loaded from local files or the Hugging Face cache; one that is missing gets
one sentence on how to get it. Numbers come with the settings that produced them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dicecli.errors import UsageError
from dicecli.files import atomic_path
from dicecli.hub import offline
from dicecli.samplefolder import FolderContents, read_folder, sweep_members
from dicecli.reportpage import value_text
from dicecli.settings import FID_FEATURES, check_choice

AESTHETIC_FILE = "sac+logos+ava1-l14-linearMSE.pth"
CLEANFID_INCEPTION = Path("/tmp/inception-2015-12-05.pt")  # where clean-fid keeps its Inception weights
BUILTIN_METRICS = ("fid", "clip", "aesthetic")
# FID is biased upward on small sets and its spread across seeds is large below a thousand images or so
# (the paper and clean-fid use 5,000-50,000); smaller folders get a note saying what the number is worth.
FID_MIN_IMAGES = 1000


def known_metrics() -> dict:
    """Built-in metric names, and those plug-ins add (`dicecli.plugins.Metric`)."""
    from dicecli.plugins import metrics

    return {**{name: None for name in BUILTIN_METRICS}, **metrics()}


def expand_sweeps(folders: list[Path]) -> list[tuple[Path, dict]]:
    """Folders as given, a sweep folder (`dice sample --alpha 0,0.5,1`, `--enhancer WORK_DIR`) replaced by its
    sample folders in order, each with the value it was sampled at (a row's label)."""
    return [member for folder in folders for member in (sweep_members(folder) or [(folder, {})])]


def open_folder(path: Path) -> FolderContents:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder of images; give dice eval sample folders (`dice sample` "
                         "outputs) or folders of reference images.")
    if not path.is_dir():
        raise UsageError(f"Image folder {path} does not exist; give a folder of images (a `dice sample` output or reference images).")
    contents = read_folder(path)
    if not contents.images:
        raise UsageError(f"Sample folder {path} holds no images; run `dice sample` into it first.")
    for image in contents.images:
        check_image(image)
    return contents


def check_figures(figures: list[Path]) -> None:
    """`--figure` files are images that can be read, before any metric runs."""
    for path in figures:
        if not path.is_file():
            raise UsageError(f"--figure {path} does not exist; give an image file (e.g. from `dice attention`).")
        check_image(path)


def check_image(path: Path) -> None:
    """Refuse a missing, truncated or non-image file before any metric starts (PIL reads it only lazily)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise UsageError(f"Image {path} cannot be read ({str(error).splitlines()[0][:100]}); replace or remove it "
                         "(and its line in metadata.jsonl).") from None


# -- FID ------------------------------------------------------------------------------------
class TinyRandomFeatures(torch.nn.Module):
    """A seeded random conv net as FID feature extractor: only for offline smoke tests (`--fid-features tiny-random`)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 5, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(16, 6, 5, stride=4),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),  # 6 features: estimable from a handful of images
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # clean-fid passes [B, 3, 299, 299] in 0..255
        return self.net(x / 127.5 - 1)


def feature_extractor(name: str, device: torch.device):
    """(callable or None for clean-fid's Inception, description)."""
    if name == "inception":
        if not CLEANFID_INCEPTION.is_file() and offline():
            raise UsageError(
                f"FID needs clean-fid's Inception weights at {CLEANFID_INCEPTION}; on a connected machine run "
                "`python -c \"from cleanfid import fid; fid.build_feature_extractor('clean')\"` and copy the file there."
            )
        return None, "clean-fid Inception-v3 (clean mode)"
    if name == "tiny-random":
        return TinyRandomFeatures().to(device).eval(), "tiny random conv features (smoke tests only)"
    check_choice("--fid-features", name, FID_FEATURES)
    raise AssertionError(name)  # every name of FID_FEATURES is handled above


FEATURE_BATCH = 32  # images per feature batch (clean-fid, CLIP); 64 prompts per CLIP text batch


def per_image(compute, items: list, what: str) -> np.ndarray | None:
    """compute(items) -> one row per item; under several processes each computes its share (in runs of whole
    batches, so every row is computed exactly as by one process) and the main process gets all rows in order,
    the others None (docs/distributed.md)."""
    from dicecli import distributed

    group = distributed.current()
    if not group.several:
        return compute(items)
    unit = 2 * FEATURE_BATCH
    mine = [x for run in group.deal([items[i : i + unit] for i in range(0, len(items), unit)]) for x in run]
    rows = group.gather(what, compute(mine) if mine else None)
    return None if rows is None else np.concatenate([r for r in rows if r is not None])


def folder_features(images: list[Path], extractor, device: torch.device) -> np.ndarray | None:
    from cleanfid import fid

    model = extractor if extractor is not None else fid.build_feature_extractor("clean", device=device, use_dataparallel=False)
    return per_image(lambda share: fid.get_files_features([str(p) for p in share], model, num_workers=0,
                                                          batch_size=FEATURE_BATCH, device=device, mode="clean",
                                                          verbose=False), images, "FID features")


def statistics(features: np.ndarray, source) -> tuple[np.ndarray, np.ndarray]:
    if len(features) < 2:
        raise UsageError(f"FID needs at least 2 images, but {source} has {len(features)}; add images to it.")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def save_statistics(path: Path, features: np.ndarray, extractor_name: str, source: str) -> None:
    mu, sigma = statistics(features, source)
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma, count=len(features), features=np.array(extractor_name), source=np.array(source))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_statistics(path: Path, extractor_name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["features"]) != extractor_name:
                raise UsageError(f"Statistics {path} were computed with {data['features']} features, not {extractor_name}; recompute them with `dice fid-stats`.")
            return data["mu"], data["sigma"]
    except (OSError, KeyError, ValueError) as error:
        raise UsageError(f"{path} is not a statistics file from `dice fid-stats` ({error}).") from None


# -- CLIP and aesthetic scores ------------------------------------------------------------------
def load_clip(name: str, device: torch.device, what: str):
    from transformers import AutoProcessor, CLIPModel

    from dicecli.runtime import quiet_libraries

    quiet_libraries()
    local = Path(name).expanduser().exists() or offline()
    try:
        model = CLIPModel.from_pretrained(name, local_files_only=local).to(device).eval()
        processor = AutoProcessor.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as error:
        raise UsageError(
            f"{what} model {name} is not available here ({str(error).splitlines()[0][:120]}); download it on a connected "
            f"machine (`hf download {name}`) into the Hugging Face cache, or pass a local folder."
        ) from None
    return model, processor


@torch.no_grad()
def image_embeddings(model, processor, images: list[Path], device: torch.device,
                     batch_size: int = FEATURE_BATCH) -> torch.Tensor:
    out = []
    for start in range(0, len(images), batch_size):
        batch = [Image.open(p).convert("RGB") for p in images[start : start + batch_size]]
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        out.append(_tensor(model.get_image_features(pixel_values=pixels)).float())
    return torch.cat(out)


def _tensor(output) -> torch.Tensor:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_score(model, processor, images: list[Path], prompts: list[str], device: torch.device) -> float | None:
    """100 * mean(max(cos(image, prompt), 0)), as torchmetrics' CLIPScore (None on a process other than the main)."""
    if not any(prompts):
        raise UsageError("CLIP score needs prompts: the folder's metadata.jsonl has no 'text' fields.")

    def scores(pairs: list[tuple[Path, str]]) -> np.ndarray:
        image = torch.nn.functional.normalize(image_embeddings(model, processor, [p for p, _ in pairs], device), dim=-1)
        texts, captions = [], [t for _, t in pairs]
        for start in range(0, len(captions), 2 * FEATURE_BATCH):
            tokens = processor(text=captions[start : start + 2 * FEATURE_BATCH], return_tensors="pt", padding="max_length",
                               truncation=True, max_length=processor.tokenizer.model_max_length)
            texts.append(_tensor(model.get_text_features(input_ids=tokens["input_ids"].to(device),
                                                         attention_mask=tokens["attention_mask"].to(device))).float())
        text = torch.nn.functional.normalize(torch.cat(texts), dim=-1)
        return (100 * (image * text).sum(-1).clamp(min=0)).cpu().numpy()

    per_pair = per_image(scores, list(zip(images, prompts)), "CLIP scores")
    return None if per_pair is None else float(torch.from_numpy(per_pair).mean())


class AestheticPredictor(torch.nn.Module):
    """The LAION improved aesthetic predictor: an MLP on L2-normalised CLIP ViT-L/14 image embeddings."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.nn.functional.normalize(embeddings, dim=-1)).squeeze(-1)


def aesthetic_weights_path(given: str | None) -> Path:
    """A local file, or `REPO_ID:FILE` taken from the Hugging Face cache (downloaded when online)."""
    from dicecli.hub import hub_file
    from dicecli.paths import dice_home
    from dicecli.refs import HUB_ID

    given = given or os.environ.get("DICE_AESTHETIC_WEIGHTS")
    if given and not Path(given).expanduser().exists() and ":" in given and HUB_ID.match(given.split(":", 1)[0]):
        repo_id, filename = given.split(":", 1)
        return Path(hub_file(repo_id, filename))
    path = Path(given or dice_home() / "aesthetic" / AESTHETIC_FILE).expanduser()
    if not path.is_file():
        raise UsageError(
            f"Aesthetic score needs the LAION improved-aesthetic-predictor weights ({AESTHETIC_FILE}, from the "
            f"christophschuhmann/improved-aesthetic-predictor repository) at {path}; download them there, or pass --aesthetic-weights."
        )
    return path


def load_aesthetic(path: Path, device: torch.device) -> AestheticPredictor:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:  # the published file is a torch state dict: load tensors only, never code
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling refusal is the same message
            raise UsageError(f"Aesthetic weights {path} are not a plain state dict ({type(error).__name__}); use the published .pth or a .safetensors file.") from None
    predictor = AestheticPredictor(state["layers.0.weight"].shape[1])
    predictor.load_state_dict(state)
    return predictor.to(device).eval()


# -- the report --------------------------------------------------------------------------------
@dataclass
class EvalReport:
    rows: list[dict]
    settings: dict
    plots: dict[str, str] = field(default_factory=dict)  # curve ("nfe", "alpha") -> its PNG
    notes: list[str] = field(default_factory=list)


def evaluate(folders: list[Path], *, ref: str | None, metrics: list[str], fid_features: str, clip_model: str,
             aesthetic_clip: str, aesthetic_weights: str | None, device: torch.device) -> EvalReport | None:
    """The report (None on a process other than the main one: docs/distributed.md)."""
    from dicecli import distributed

    known = known_metrics()
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise UsageError(f"--metrics {','.join(unknown)} not known; choose from {', '.join(known)}.")
    if "fid" in metrics and not ref:
        raise UsageError("FID needs --ref: a folder of reference images or statistics from `dice fid-stats`.")
    members = expand_sweeps([Path(f) for f in folders])
    samples = [open_folder(f) for f, _ in members]
    rows = [{**s.label, **swept, "prompt_set": s.prompt_set, "images": len(s.images)} for s, (_, swept) in zip(samples, members)]
    notes = mixed_folder_notes(samples)
    settings = {"metrics": metrics, "ref": ref, "fid_features": fid_features, "clip_model": clip_model,
                "aesthetic_clip": aesthetic_clip, "device": str(device)}
    if "fid" in metrics:
        ref_path = Path(ref)
        if not ref_path.exists():
            raise UsageError(f"--ref {ref} does not exist; give a reference image folder or a statistics .npz.")
        stats = load_statistics(ref_path, fid_features) if ref_path.is_file() else None
        extractor, description = feature_extractor(fid_features, device)
        settings["fid_features_description"] = description
        reference = stats
        if stats is None:
            features = folder_features(open_folder(ref_path).images, extractor, device)
            reference = None if features is None else statistics(features, ref_path)
        from cleanfid import fid

        for row, sample in zip(rows, samples):
            features = folder_features(sample.images, extractor, device)
            if features is None:
                continue  # a process other than the main: its share is with the main process
            mu_r, sigma_r = reference
            mu, sigma = statistics(features, sample.path)
            with warnings.catch_warnings():  # near-singular covariances of small folders: the value is still reported
                warnings.simplefilter("ignore")
                row["fid"] = max(0.0, float(fid.frechet_distance(mu, sigma, mu_r, sigma_r)))
    if "clip" in metrics:
        model, processor = load_clip(clip_model, device, "CLIP-score")
        for row, sample in zip(rows, samples):
            row["clip"] = clip_score(model, processor, sample.images, sample.prompts, device)
        del model
    if "aesthetic" in metrics:
        predictor = load_aesthetic(aesthetic_weights_path(aesthetic_weights), device)
        model, processor = load_clip(aesthetic_clip, device, "Aesthetic-score CLIP")

        @torch.no_grad()
        def aesthetic(images: list[Path]) -> np.ndarray:
            return predictor(image_embeddings(model, processor, images, device)).cpu().numpy()

        for row, sample in zip(rows, samples):
            scores = per_image(aesthetic, sample.images, "aesthetic scores")
            row["aesthetic"] = None if scores is None else float(torch.from_numpy(scores).mean())
    if not distributed.current().main:
        return None  # the main process reports; plug-in metrics run there
    if "fid" in metrics or any(known[m] is not None and known[m].fid_like for m in metrics):
        notes += few_images_notes(samples)
    for name in metrics:
        metric = known[name]
        if metric is None:
            continue  # built in, computed above
        settings[name] = metric.description
        for row, sample in zip(rows, samples):
            scores = metric.score(sample, device)
            if "note" in scores:  # a metric may say what its numbers mean for this folder
                notes.append(scores.pop("note"))
            row.update(scores)
    return EvalReport(rows, settings, notes=notes)


def mixed_folder_notes(samples: list[FolderContents]) -> list[str]:
    """What a reader of the table should know: folders of different image sizes, or of different models."""
    notes = []
    sizes = {}
    for sample in samples:
        with Image.open(sample.images[0]) as image:
            sizes[str(sample.path)] = "x".join(map(str, image.size))
    if len(set(sizes.values())) > 1:
        notes.append("the folders hold images of different sizes (" + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                     + "); each metric resizes them as it reads them, so compare these rows with care.")
    models = {str(s.path): s.settings["model"] for s in samples if s.settings.get("model")}
    if len(set(models.values())) > 1:
        notes.append("the folders come from different models (" + ", ".join(f"{k}: {v}" for k, v in models.items())
                     + "), as in a transfer; each row says which.")
    return notes


def few_images_notes(samples: list[FolderContents]) -> list[str]:
    small = [f"{s.path} ({len(s.images)})" for s in samples if len(s.images) < FID_MIN_IMAGES]
    if not small:
        return []
    return [f"FID over fewer than {FID_MIN_IMAGES:,} images is mostly estimation bias and noise: "
            f"{', '.join(small)}; read those FIDs only as a smoke test (they lie far above a large set's), and sample "
            "more images for a comparison."]


LABEL_COLUMNS = [("folder", "folder"), ("model", "model"), ("method", "method"), ("enhancer", "enhancer"),
                 ("step", "trained steps"), ("part", "part"), ("cfg", "cfg"), ("alpha", "alpha"), ("steps", "steps"),
                 ("nfe", "NFE")]
METRIC_COLUMNS = [("fid", "FID ↓"), ("clip", "CLIP ↑"), ("aesthetic", "AS ↑")]


def columns() -> list[tuple[str, str]]:
    extra = [c for metric in known_metrics().values() if metric is not None for c in metric.columns]
    return LABEL_COLUMNS + METRIC_COLUMNS + extra + [("images", "images")]


def _shown(report: EvalReport) -> list[tuple[str, str]]:
    """The columns some row has a value for (the folder always)."""
    return [(k, title) for k, title in columns() if k == "folder" or any(row.get(k) is not None for row in report.rows)]


def markdown_table(report: EvalReport) -> str:
    shown = _shown(report)
    lines = ["| " + " | ".join(t for _, t in shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(value_text(row.get(k)) for k, _ in shown) + " |" for row in report.rows]
    return "\n".join(lines) + "\n"


def csv_text(report: EvalReport) -> str:
    keys = [k for k, _ in _shown(report)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report.rows)
    return buffer.getvalue()


def json_text(report: EvalReport) -> str:
    return json.dumps(asdict(report), indent=2)


# The curves a report can hold: rows that differ only in this column, at several values of it.
CURVES = {"nfe": ("NFE (denoiser evaluations per image)", ("steps", "nfe")), "alpha": ("enhancer strength alpha", ("alpha",)),
          "step": ("distillation steps (the enhancer's checkpoints)", ("step",))}


def curve_lines(report: EvalReport, axis: str) -> tuple[list[str], dict[tuple, list[dict]]]:
    """The settings that name a curve, and the curves: groups of rows that differ only in `axis` (and their
    folder), on the same prompts, holding several values of it, each sorted along `axis`."""
    _, varying = CURVES[axis]
    fixed = [k for k, _ in LABEL_COLUMNS if k != "folder" and k not in varying] + ["prompt_set"]
    groups: dict[tuple, list[dict]] = {}
    for row in report.rows:
        if row.get(axis) is not None:
            groups.setdefault(tuple(row.get(k) for k in fixed), []).append(row)
    return fixed, {k: sorted(v, key=lambda r: r[axis]) for k, v in groups.items() if len({r[axis] for r in v}) > 1}


def curve_plot(report: EvalReport, path: Path, axis: str) -> bool:
    """Quality against NFE (the paper's Figure 5) or against the enhancer's strength (its Figure 8), one line per
    curve (`curve_lines`); False when there is none."""
    label = CURVES[axis][0]
    fixed, lines = curve_lines(report, axis)
    metric_keys = [k for k, _ in columns() if k not in dict(LABEL_COLUMNS) and k != "images"]
    metrics = [m for m in metric_keys if any(r.get(m) is not None for r in report.rows)]
    if not lines or not metrics:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def name(key: tuple) -> str:
        values = dict(zip(fixed, key))
        text = f"{values['method']} (cfg {values['cfg']:g})" if values.get("cfg") is not None else str(values["method"])
        differing = [k for k in ("model", "enhancer", "part", "alpha", "steps", "prompt_set") if k in values
                     and len({dict(zip(fixed, other)).get(k) for other in lines}) > 1 and values[k] is not None]
        return text + "".join(f", {k.replace('_', ' ')} {values[k]}" for k in differing)

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for key, rows in lines.items():
            ax.plot([r[axis] for r in rows], [r.get(metric) for r in rows], marker="o", label=name(key))
        ax.set_xlabel(label)
        ax.set_ylabel(dict(columns()).get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return True


REPORT_SUFFIXES = (".json", ".md", ".csv", "-nfe.png", "-alpha.png", "-step.png", ".html")


def check_report_output(base: Path, inputs: list[Path]) -> None:
    """Before any metric runs: the report files can be written and replace none of the inputs."""
    from dicecli.files import check_output, check_writable

    for suffix in REPORT_SUFFIXES:
        path = base.with_name(base.name + suffix)
        check_writable(path)
        check_output(path, inputs)


def write_report(report: EvalReport, base: Path, figures: list[Path] = (), page_prompts: int | None = None) -> None:
    """BASE.json, BASE.md, BASE.csv, the curves (BASE-nfe.png when a method was sampled at several step counts,
    BASE-alpha.png at several strengths) and BASE.html, the page to look at (`dicecli.reportpage`)."""
    from dicecli.reportpage import PAGE_PROMPTS, write_page

    for axis in CURVES:
        plot = base.with_name(f"{base.name}-{axis}.png")
        if curve_plot(report, plot, axis):
            report.plots[axis] = str(plot)
    notes = "".join(f"\nNote: {note}\n" for note in report.notes)
    for suffix, text in ((".json", json_text(report)), (".md", markdown_table(report) + notes), (".csv", csv_text(report))):
        with atomic_path(base.with_name(base.name + suffix)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    write_page(report, _shown(report), base.with_name(base.name + ".html"), figures,
               PAGE_PROMPTS if page_prompts is None else page_prompts)


def save_folder_statistics(folder: Path, output: Path, fid_features: str, device: torch.device) -> int:
    """`dice fid-stats`: features of every image of `folder` -> mean and covariance in `output`; returns the count."""
    from dicecli.files import check_output, check_writable

    check_writable(output)
    check_output(output, [folder])
    extractor, _ = feature_extractor(fid_features, device)
    images = open_folder(folder).images
    features = folder_features(images, extractor, device)
    if features is not None:  # the main process
        save_statistics(output, features, fid_features, str(folder))
    return len(images)
