"""The toy world: procedural image–caption pairs where CFG visibly matters (docs/toyworld.md).

Scenes hold one or two objects with a shape, colour, size and position on a background,
rendered at 64 x 64 with jitter (position, size, rotation, colour, background shading), so
that each caption covers a broad distribution of images. Captions come in several
phrasings and often leave attributes unsaid. A fixed set of (colour, shape) pairs never
appears in training scenes: prompts built from them test generalisation.

Everything is seeded: scene i of a world with seed s is the same on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLORS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "cyan": (40, 200, 210),
}
SIZES = {"small": 0.18, "large": 0.34}  # radius as a share of the image side
POSITIONS = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "center": (0.5, 0.5)}
BACKGROUNDS = {"grey": (128, 128, 128), "black": (20, 20, 20), "white": (240, 240, 240), "beige": (225, 205, 170)}
# Never rendered in training scenes; prompts with them are the held-out evaluation set.
HELD_OUT_PAIRS = (("red", "star"), ("blue", "triangle"), ("green", "diamond"), ("yellow", "circle"),
                  ("purple", "square"), ("orange", "star"), ("cyan", "triangle"))
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
                    "center": "in the center"}
IMAGE_SIZE = 64
ATTRIBUTE_KINDS = ("background", "shape", "color", "size", "position")


@dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    size: str
    position: str


@dataclass
class Scene:
    things: list[Thing]
    background: str
    caption: str = ""
    stated: dict = field(default_factory=dict)  # the attributes the caption names, per object

    def render(self, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
        """Draw at 4x and downsample (anti-aliasing); jitter everything a caption leaves open."""
        scale = 4
        side = size * scale
        base = np.array(BACKGROUNDS[self.background], dtype=np.float32) + rng.normal(0, 8, 3)
        shade = np.linspace(-12, 12, side, dtype=np.float32)[:, None] * rng.choice([-1, 1])
        canvas = np.clip(base[None, None, :] + shade[..., None], 0, 255).astype(np.uint8).repeat(side, axis=1)
        image = Image.fromarray(canvas, "RGB")
        draw = ImageDraw.Draw(image)
        for thing in self.things:
            cx, cy = POSITIONS[thing.position]
            cx, cy = (cx + rng.normal(0, 0.04)) * side, (cy + rng.normal(0, 0.04)) * side
            radius = SIZES[thing.size] * side * rng.uniform(0.85, 1.15) * (0.75 if len(self.things) > 1 else 1.0)
            color = tuple(int(c) for c in np.clip(np.array(COLORS[thing.color]) + rng.normal(0, 15, 3), 0, 255))
            _draw_shape(draw, thing.shape, cx, cy, radius, rng.uniform(0, 2 * math.pi), color)
        return image.resize((size, size), Image.Resampling.LANCZOS)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, color) -> None:
    def polygon(points: int, radii: list[float], turn: float):
        return [(cx + radii[k % len(radii)] * math.cos(turn + 2 * math.pi * k / points),
                 cy + radii[k % len(radii)] * math.sin(turn + 2 * math.pi * k / points)) for k in range(points)]

    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    elif shape == "square":
        draw.polygon(polygon(4, [r * 1.15], angle), fill=color)
    elif shape == "triangle":
        draw.polygon(polygon(3, [r * 1.2], angle), fill=color)
    elif shape == "diamond":
        draw.polygon(polygon(4, [r * 1.25, r * 0.7], angle), fill=color)
    elif shape == "star":
        draw.polygon(polygon(10, [r * 1.25, r * 0.5], angle), fill=color)
    else:
        raise ValueError(shape)


def _thing(rng: np.random.Generator, held_out: bool, taken: set[str]) -> Thing:
    while True:
        color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
        if ((color, shape) in HELD_OUT_PAIRS) == held_out:
            break
    position = str(rng.choice([p for p in POSITIONS if p not in taken]))
    return Thing(shape, color, str(rng.choice(list(SIZES))), position)


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# Phrasings: each returns the caption and which attributes of each object it states.
def _phrase(rng: np.random.Generator, things: list[Thing], background: str) -> tuple[str, dict]:
    t = things[0]
    if len(things) == 2:
        u = things[1]
        if rng.random() < 0.5:
            return (f"{_a(t.color)} {t.shape} and {_a(u.color)} {u.shape}",
                    {"objects": [dict(shape=t.shape, color=t.color), dict(shape=u.shape, color=u.color)]})
        return (f"{_a(t.color)} {t.shape} {POSITION_PHRASES[t.position]} and {_a(u.color)} {u.shape} "
                f"{POSITION_PHRASES[u.position]}",
                {"objects": [dict(shape=t.shape, color=t.color, position=t.position),
                             dict(shape=u.shape, color=u.color, position=u.position)]})
    style = int(rng.integers(5))
    if style == 0:
        return (f"{_a(t.size)} {t.color} {t.shape} {POSITION_PHRASES[t.position]}",
                {"objects": [dict(shape=t.shape, color=t.color, size=t.size, position=t.position)]})
    if style == 1:
        return (f"{t.color} {t.shape}, {t.position} side, {t.size}, on a {background} background",
                {"objects": [dict(shape=t.shape, color=t.color, size=t.size, position=t.position)], "background": background})
    if style == 2:
        return f"{_a(t.color)} {t.shape}", {"objects": [dict(shape=t.shape, color=t.color)]}
    if style == 3:
        return (f"{t.size} {t.shape} in {t.color} at the {t.position} of a {background} canvas",
                {"objects": [dict(shape=t.shape, color=t.color, size=t.size, position=t.position)], "background": background})
    return (f"there is {_a(t.color)} {t.shape} {POSITION_PHRASES[t.position]} against a {background} background",
            {"objects": [dict(shape=t.shape, color=t.color, position=t.position)], "background": background})


def make_scene(rng: np.random.Generator, held_out: bool = False) -> Scene:
    """One scene and its caption. held_out=True draws from the pairs never seen in training."""
    count = 2 if rng.random() < 0.25 else 1
    things: list[Thing] = []
    for _ in range(count):
        things.append(_thing(rng, held_out and not things, {t.position for t in things}))
    background = str(rng.choice(list(BACKGROUNDS)))
    caption, stated = _phrase(rng, things, background)
    return Scene(things, background, caption, stated)


class ToyWorld(Sequence):
    """Scenes 0..size-1 of a seeded world; scene i and its rendering depend only on (seed, i).

    Scenes are made on first use, so a large world costs nothing until it is read. As a
    sequence, the world is its list of captions.
    """

    def __init__(self, size: int = 100_000, seed: int = 0, held_out: bool = False):
        self.size, self.seed, self.held_out = size, seed, held_out
        self._scenes: dict[int, Scene] = {}

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(self.held_out), index, stream])

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if index not in self._scenes:
            self._scenes[index] = make_scene(self._rng(index, 0), self.held_out)
        return self._scenes[index]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.caption(i) for i in range(*index.indices(self.size))]
        return self.caption(index)

    def caption(self, index: int) -> str:
        return self.scene(index).caption

    def image(self, index: int, size: int = IMAGE_SIZE) -> Image.Image:
        return self.scene(index).render(self._rng(index, 1), size)

    def vocabulary(self) -> list[str]:
        """Every word a caption can use (for a word-level tokenizer)."""
        words = set()
        for phrase in POSITION_PHRASES.values():
            words.update(phrase.split())
        words.update(SHAPES, COLORS, SIZES, POSITIONS, BACKGROUNDS)
        words.update("a an and there is against background canvas side of at in on the".split())
        return sorted(words)


# -- the evaluator: reads the attributes back from an image ---------------------------------------

POSITION_NAMES = tuple(POSITIONS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
COLOR_NAMES = tuple(COLORS)
SIZE_NAMES = tuple(SIZES)


def scene_labels(scene: Scene) -> dict[str, np.ndarray]:
    """Targets of the attribute classifier: background, and per position presence/shape/colour/size (-1 = none)."""
    labels = {"background": np.int64(BACKGROUND_NAMES.index(scene.background)),
              "present": np.zeros(len(POSITIONS), np.int64), "shape": np.full(len(POSITIONS), -1, np.int64),
              "color": np.full(len(POSITIONS), -1, np.int64), "size": np.full(len(POSITIONS), -1, np.int64)}
    for thing in scene.things:
        p = POSITION_NAMES.index(thing.position)
        labels["present"][p] = 1
        labels["shape"][p] = SHAPES.index(thing.shape)
        labels["color"][p] = COLOR_NAMES.index(thing.color)
        labels["size"][p] = SIZE_NAMES.index(thing.size)
    return labels


def attribute_hits(stated: dict, reading: dict) -> dict[str, tuple[int, int]]:
    """(found, stated) per attribute kind: background, shape, color, size, position.

    `reading` holds the classifier's answers: background, and per position whether an object
    is there and its shape, colour and size. An object whose position the prompt leaves open is
    matched to the detected object that agrees with it best.
    """
    hits = {k: [0, 0] for k in ATTRIBUTE_KINDS}
    if "background" in stated:
        hits["background"] = [int(reading["background"] == stated["background"]), 1]
    detected = [p for p in POSITION_NAMES if reading["present"][p]]
    for wanted in stated["objects"]:
        keys = [k for k in ("shape", "color", "size") if k in wanted] + (["position"] if "position" in wanted else [])
        for k in keys:
            hits[k][1] += 1
        best: list[str] = []
        for p in [wanted["position"]] if "position" in wanted else detected:
            if reading["present"][p]:
                got = [k for k in keys if k == "position" or reading[k][p] == wanted[k]]
                best = got if len(got) > len(best) else best
        for k in best:
            hits[k][0] += 1
    return {k: (found, total) for k, (found, total) in hits.items()}


def alignment(stated: dict, reading: dict) -> float:
    """Share of the attributes a prompt states that the classifier finds in the image."""
    hits = attribute_hits(stated, reading).values()
    total = sum(t for _, t in hits)
    return sum(f for f, _ in hits) / total if total else 1.0


class AttributeNet(torch.nn.Module):
    """The toy evaluator: a small CNN reading the background and, per position, presence / shape / colour /
    size. Its 256-d penultimate features serve as FID features for the toy world."""

    def __init__(self):
        super().__init__()
        c = [3, 32, 64, 128, 128]
        layers = []
        for a, b in zip(c, c[1:]):
            layers += [torch.nn.Conv2d(a, b, 3, padding=1), torch.nn.GroupNorm(8, b), torch.nn.SiLU(), torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(128 * 16, 256), torch.nn.SiLU())
        p = len(POSITION_NAMES)
        self.background = torch.nn.Linear(256, len(BACKGROUND_NAMES))
        self.present = torch.nn.Linear(256, p * 2)
        self.shape = torch.nn.Linear(256, p * len(SHAPES))
        self.color = torch.nn.Linear(256, p * len(COLOR_NAMES))
        self.size = torch.nn.Linear(256, p * len(SIZE_NAMES))

    def forward(self, x):  # x: [B, 3, 64, 64] in [-1, 1]
        h = self.features(x)
        p = len(POSITION_NAMES)
        return {"features": h, "background": self.background(h), "present": self.present(h).view(-1, p, 2),
                "shape": self.shape(h).view(-1, p, len(SHAPES)), "color": self.color(h).view(-1, p, len(COLOR_NAMES)),
                "size": self.size(h).view(-1, p, len(SIZE_NAMES))}


def to_input(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def read(net: AttributeNet, images: np.ndarray, device) -> list[dict]:
    out = []
    for s in range(0, len(images), 512):
        o = net(to_input(images[s : s + 512], device))
        for b in range(o["background"].shape[0]):
            out.append({
                "background": BACKGROUND_NAMES[o["background"][b].argmax().item()],
                "present": {p: bool(o["present"][b, i].argmax().item()) for i, p in enumerate(POSITION_NAMES)},
                "shape": {p: SHAPES[o["shape"][b, i].argmax().item()] for i, p in enumerate(POSITION_NAMES)},
                "color": {p: COLOR_NAMES[o["color"][b, i].argmax().item()] for i, p in enumerate(POSITION_NAMES)},
                "size": {p: SIZE_NAMES[o["size"][b, i].argmax().item()] for i, p in enumerate(POSITION_NAMES)},
            })
    return out


def parse_caption(caption: str) -> dict:
    """The attributes a toy caption states (the inverse of the phrasings), for prompts read from a folder."""
    stated: dict = {"objects": []}
    for phrase in caption.replace(",", " ").split(" and "):
        thing = {}
        for word in phrase.split():
            if word in COLORS:
                thing["color"] = word
            elif word in SHAPES:
                thing["shape"] = word
            elif word in SIZES:
                thing["size"] = word
            elif word in POSITIONS:
                thing["position"] = word
            elif word in BACKGROUNDS:
                stated["background"] = word
        if thing:
            stated["objects"].append(thing)
    return stated


def scene_from_stated(stated: dict, rng: np.random.Generator) -> Scene:
    """A ground-truth scene for a prompt: what it states, the rest drawn at random."""
    things, taken = [], {o["position"] for o in stated["objects"] if "position" in o}
    for wanted in stated["objects"]:
        position = wanted.get("position") or str(rng.choice([p for p in POSITIONS if p not in taken]))
        taken.add(position)
        things.append(Thing(wanted.get("shape") or str(rng.choice(SHAPES)), wanted.get("color") or str(rng.choice(COLOR_NAMES)),
                            wanted.get("size") or str(rng.choice(SIZE_NAMES)), position))
    return Scene(things, stated.get("background") or str(rng.choice(BACKGROUND_NAMES)), "", stated)


HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"  # the shipped toy pipeline (diffusers folder)
EVALUATOR_FILE = HERE / "toy-evaluator.safetensors"
ENHANCER_FILE = HERE / "toy-dice.safetensors"  # the shipped reference enhancer (`--enhancer toy`)


def load_evaluator(device="cpu") -> AttributeNet:
    """The shipped toy evaluator (dicecli/plugins/toy/toy-evaluator.safetensors)."""
    from safetensors.torch import load_file

    net = AttributeNet()
    net.load_state_dict(load_file(str(EVALUATOR_FILE)))
    return net.to(device).eval()


@torch.no_grad()
def features(net: AttributeNet, images: np.ndarray, device) -> np.ndarray:
    return np.concatenate([net(to_input(images[s : s + 512], device))["features"].cpu().numpy()
                           for s in range(0, len(images), 512)])


def toy_metrics(prompts: list[str], images: np.ndarray, device="cpu", seed: int = 0) -> dict:
    """Alignment (share of prompted attributes the evaluator finds) and FID on the evaluator's features
    against ground-truth renders of the same prompts."""
    from cleanfid import fid

    net = load_evaluator(device)
    stated = [parse_caption(p) for p in prompts]
    score = float(np.mean([alignment(s, r) for s, r in zip(stated, read(net, images, device))]))
    rng = np.random.default_rng(seed)
    truth = np.stack([np.asarray(scene_from_stated(s, rng).render(rng, images.shape[1])) for s in stated])
    a, b = features(net, images, device), features(net, truth, device)
    distance = fid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    return {"alignment": score, "toy_fid": max(0.0, float(distance))}
