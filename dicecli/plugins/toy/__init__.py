"""The toy world as a plug-in: the procedural world, the shipped toy model, its evaluator and
reference enhancer, `--data toy[:N]` and `dice eval --metrics toy` (docs/toyworld.md).

Core code never imports this package; it finds it through `dicecli.plugins`.
"""

from __future__ import annotations

from pathlib import Path

from dicecli.errors import UsageError
from dicecli.plugins import Metric, Plugin
from dicecli.plugins.toy.world import ENHANCER_FILE, MODEL_DIR


def open_toy_data(spec: str):
    """`--data toy` (100,000 seeded scenes) or `toy:N`: images are rendered as they are read."""
    from dicecli.data import TrainingData
    from dicecli.plugins.toy.world import ToyWorld

    size = spec.partition(":")[2]
    if size and not size.isdigit():
        raise UsageError(f"--data {spec}: give toy or toy:N with N scenes, e.g. toy:20000.")
    world = ToyWorld(size=int(size) if size else 100_000)
    return TrainingData(world, render=world.image, source=spec)


def toy_score(folder, device) -> dict:
    """Alignment and toy FID of a sample folder of the toy model (images read at the world's size)."""
    import numpy as np
    from PIL import Image

    from dicecli.plugins.toy.world import IMAGE_SIZE, toy_metrics

    model = folder.settings.get("model")
    with Image.open(folder.images[0]) as first:
        size = first.size
    note = None
    if (Path(model).name != "toy") if model else size != (IMAGE_SIZE, IMAGE_SIZE):
        made = f"images of {model}" if model else f"{size[0]}x{size[1]} images"
        note = (f"--metrics toy scores toy-world images, but {folder.path} holds {made}; its toy scores only say how "
                "far they are from the toy world.")
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
                       for p in folder.images])
    return {**toy_metrics(folder.prompts, pixels, device), **({"note": note} if note else {})}


plugin = Plugin(
    name="toy",
    models={"toy": MODEL_DIR},
    enhancers={"toy": ENHANCER_FILE},
    data={"toy": open_toy_data},
    metrics={"toy": Metric(toy_score, [("toy_fid", "FID (toy) ↓"), ("alignment", "alignment ↑")],
                           "alignment and FID on the shipped toy evaluator's features, against ground-truth renders",
                           fid_like=True)},
)
