"""Image–caption training data: imagefolder, COCO layout, or a `dice-latents` cache."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from dicecli.errors import UsageError
from dicecli.samplefolder import has_metadata, read_records

NAMED_DATA = {"coco2017-train": ("train2017", "captions_train2017.json"), "coco2017-val": ("val2017", "captions_val2017.json")}


def coco_root() -> Path:
    return Path(os.environ.get("DICE_COCO_DIR", "~/datasets/coco2017")).expanduser()


@dataclass
class TrainingData:
    """Either image files (VAE-encoded during training) or cached latents, with one caption each."""

    captions: Sequence[str]
    images: list[Path] | None = None
    latents: torch.Tensor | None = None  # [N, C, h, w], already times the VAE scaling factor
    source: str = ""
    vae_fingerprint: str | None = None  # latents: the VAE they were made with
    resolution: int | None = None  # latents: the image size they were encoded at
    render: Callable[[int], Image.Image] | None = None  # images made on the fly (plug-in data)
    # latents: the text encoder whose caption embeddings the cache holds beside them (None: it holds none)
    text_fingerprint: str | None = None
    text_clip_skip: int = 1  # the clip skip the captions' embeddings were made with

    def caption_embeddings(self):
        """The cache's caption embeddings, read by row (`EmbeddingCache.conditioning`), or None."""
        from dicecli.cache import LATENTS_FORMAT, EmbeddingCache

        return EmbeddingCache(Path(self.source), fmt=LATENTS_FORMAT) if self.text_fingerprint else None

    def __len__(self) -> int:
        return len(self.captions)


class ImageDataset(torch.utils.data.Dataset):
    """Images resized (shorter side) and centre-cropped to `resolution`, scaled to [-1, 1]."""

    def __init__(self, data: TrainingData, resolution: int):
        self.data, self.resolution = data, resolution

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        if self.data.render is not None:
            return to_tensor(self.data.render(index), self.resolution), index
        return load_image(self.data.images[index], self.resolution), index


def load_image(path: Path, resolution: int) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except OSError as error:
        raise UsageError(f"Image {path} cannot be read ({error}); remove it from the data or replace it.") from None
    return to_tensor(image, resolution)


def to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def open_training_data(spec: str | None, recipe_name: str = "") -> TrainingData:
    if not spec:
        raise UsageError("--data is required for this model (its recipe names no data); give an imagefolder, a COCO folder or a latent cache.")
    if spec in NAMED_DATA:
        return _named(spec, recipe_name)
    path = Path(spec).expanduser()
    if not path.exists():
        from dicecli.plugins import data_sources

        opener = data_sources().get(spec.partition(":")[0])
        if opener is not None:
            return opener(spec)  # data a plug-in makes, e.g. scenes rendered as they are read
    if not path.exists():
        raise UsageError(f"Training data {spec} does not exist; give an imagefolder, a COCO folder or a latent cache (.h5) to --data.")
    if path.is_file() and path.suffix == ".h5":
        return _latents(path)
    if path.is_dir() and has_metadata(path):
        return _imagefolder(path)
    if path.is_dir() and (path / "annotations").is_dir():
        captions = sorted((path / "annotations").glob("captions_*.json"))
        if len(captions) != 1:
            raise UsageError(f"COCO folder {path} has {len(captions)} captions_*.json files in annotations/; pass --data {path}/annotations/captions_<split>.json.")
        return _coco(captions[0], path / captions[0].stem.removeprefix("captions_"))
    if path.is_file() and path.suffix == ".json":
        return _coco(path, path.parent.parent / path.stem.removeprefix("captions_"))
    raise UsageError(
        f"Training data {spec} is neither an imagefolder (images + metadata.jsonl), a COCO folder "
        "(annotations/captions_*.json + images) nor a latent cache (.h5); convert it to one of those."
    )


def _named(name: str, recipe_name: str) -> TrainingData:
    folder, captions = NAMED_DATA[name]
    root = coco_root()
    if not (root / "annotations" / captions).is_file() or not (root / folder).is_dir():
        who = f"Recipe {recipe_name} trains" if recipe_name else "This run trains"
        raise UsageError(
            f"{who} on COCO 2017 ({name}), expected at {root} ({folder}/ and annotations/{captions}); "
            "download it from cocodataset.org and set DICE_COCO_DIR to that folder, or pass --data."
        )
    return _coco(root / "annotations" / captions, root / folder)


def _imagefolder(path: Path) -> TrainingData:
    records = read_records(path, require_text=True)
    images, captions = [path / r["file_name"] for r in records], [r["text"] for r in records]
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise UsageError(f"Imagefolder {path} lists {len(missing)} missing images (first: {missing[0].name}); fix metadata.jsonl.")
    if not images:
        raise UsageError(f"Imagefolder {path} has no entries in metadata.jsonl; add image–caption pairs.")
    return TrainingData(captions, images=images, source=str(path))


def _coco(captions_file: Path, image_dir: Path) -> TrainingData:
    try:
        document = json.loads(captions_file.read_text(encoding="utf-8"))
        files = {image["id"]: image["file_name"] for image in document["images"]}
        pairs = [(image_dir / files[a["image_id"]], a["caption"].strip()) for a in document["annotations"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(f"{captions_file} is not a COCO captions file ({type(error).__name__}: {error}); check it.") from None
    if not image_dir.is_dir():
        raise UsageError(f"COCO images folder {image_dir} (for {captions_file.name}) does not exist; put the images there.")
    # COCO has about five captions per image; one pair per caption, as in the reference code.
    return TrainingData([c for _, c in pairs], images=[p for p, _ in pairs], source=str(captions_file))


def _latents(path: Path) -> TrainingData:
    from dicecli.cache import LATENTS_FORMAT, EmbeddingCache

    with EmbeddingCache(path, fmt=LATENTS_FORMAT) as cache:
        if "latents" not in cache.file:
            raise UsageError(f"Latent cache {path} has no latents dataset; it is damaged, rebuild it with `dice encode --images`.")
        latents = torch.from_numpy(cache.array("latents"))
        captions = cache.prompts
        attrs = cache.attrs
        encoded = "prompt_embeds" in cache.file
    return TrainingData(captions, latents=latents, source=str(path), vae_fingerprint=attrs.get("vae_fingerprint"),
                        resolution=attrs.get("resolution"),
                        text_fingerprint=attrs.get("text_encoder_fingerprint") if encoded else None,
                        text_clip_skip=int(attrs.get("clip_skip", 1)))
