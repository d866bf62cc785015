"""The toy world: procedural image–caption pairs where CFG visibly matters (docs/toyworld.md).

Scenes hold one or two objects with a shape, colour, size and position on a background,
rendered at 64 x 64 with jitter (position, size, rotation, colour, background shading), so
that each caption covers a broad distribution of images. Captions come in many phrasings,
with the synonyms a user would type, and often leave attributes unsaid. Two things are held
out of training scenes: a fixed set of (colour, shape) pairs, and some phrasing patterns.
Prompts built from either test generalisation.

Everything is seeded: scene i of a world with seed s is the same on every machine.
"""

from __future__ import annotations

import itertools
import math
import re
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
IMAGE_SIZE = 64
ATTRIBUTE_KINDS = ("background", "shape", "color", "size", "position")

# The words a user types for each value (the first is the canonical name). Every word is unique
# to its attribute, so a caption's attributes are read back word by word (parse_caption).
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
               "star": ("star",), "diamond": ("diamond", "rhombus")}
COLOR_WORDS = {"red": ("red", "crimson"), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
               "purple": ("purple", "violet"), "orange": ("orange",), "cyan": ("cyan", "turquoise")}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
BACKGROUND_WORDS = {"grey": ("grey", "gray"), "black": ("black", "dark"), "white": ("white",), "beige": ("beige", "tan")}
POSITION_WORDS = {"left": ("left",), "right": ("right",), "top": ("top",), "bottom": ("bottom",),
                  "center": ("center", "centre", "middle")}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "to the left", "on the left side"),
    "right": ("on the right", "at the right", "to the right", "on the right side"),
    "top": ("at the top", "near the top", "at the top edge", "up at the top"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom edge", "down at the bottom"),
    "center": ("in the center", "in the middle", "in the centre", "at the center"),
}
BACKDROPS = ("background", "canvas", "backdrop")
PHRASINGS = ("seen", "held_out", "all")
PAIRS = ("seen", "held_out", "all")


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


def _thing(rng: np.random.Generator, pairs: str, taken: set[str]) -> Thing:
    while True:
        color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
        if pairs == "all" or ((color, shape) in HELD_OUT_PAIRS) == (pairs == "held_out"):
            break
    position = str(rng.choice([p for p in POSITIONS if p not in taken]))
    return Thing(shape, color, str(rng.choice(list(SIZES))), position)


class _Words:
    """Draws the words of one caption: a synonym for each value, an article that fits."""

    def __init__(self, rng: np.random.Generator, background: str):
        self.rng, self.background = rng, background

    def pick(self, options) -> str:
        return str(options[int(self.rng.integers(len(options)))])

    def shape(self, t: Thing) -> str:
        return self.pick(SHAPE_WORDS[t.shape])

    def color(self, t: Thing) -> str:
        return self.pick(COLOR_WORDS[t.color])

    def size(self, t: Thing) -> str:
        return self.pick(SIZE_WORDS[t.size])

    def pos(self, t: Thing) -> str:
        return self.pick(POSITION_PHRASES[t.position])

    def where(self, t: Thing) -> str:  # the bare position word: "left", "middle"
        return self.pick(POSITION_WORDS[t.position])

    def bg(self) -> str:
        return f"{self.pick(BACKGROUND_WORDS[self.background])} {self.pick(BACKDROPS)}"

    @staticmethod
    def a(word: str) -> str:
        return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# Phrasing patterns: (name, held out of training, template, attributes stated per object[, states the
# background]). A template gets the word source w and the object t (pairs: t and u).
_ALL = ("shape", "color", "size", "position")
SINGLE_PATTERNS = (
    ("size-color-shape-pos", False, lambda w, t: f"{w.a(w.size(t))} {w.color(t)} {w.shape(t)} {w.pos(t)}", _ALL, False),
    ("list", False, lambda w, t: f"{w.color(t)} {w.shape(t)}, {w.where(t)} side, {w.size(t)}, on a {w.bg()}", _ALL, True),
    ("color-shape", False, lambda w, t: f"{w.a(w.color(t))} {w.shape(t)}", ("shape", "color"), False),
    ("shape-in-color-of-canvas", False,
     lambda w, t: f"{w.size(t)} {w.shape(t)} in {w.color(t)} at the {w.where(t)} of a {w.bg()}", _ALL, True),
    ("there-is", False, lambda w, t: f"there is {w.a(w.color(t))} {w.shape(t)} {w.pos(t)} against a {w.bg()}",
     ("shape", "color", "position"), True),
    ("shape-in-color-pos", False, lambda w, t: f"{w.a(w.shape(t))} in {w.color(t)} {w.pos(t)}",
     ("shape", "color", "position"), False),
    ("color-shape-on-bg", False, lambda w, t: f"{w.a(w.color(t))} {w.shape(t)} on a {w.bg()}", ("shape", "color"), True),
    ("the-shape-is-pos", False, lambda w, t: (lambda s: f"{w.a(w.color(t))} {s}. the {s} is {w.pos(t)}")(w.shape(t)),
     ("shape", "color", "position"), False),
    ("pos-first", False, lambda w, t: f"{w.pos(t)}, {w.a(w.size(t))} {w.color(t)} {w.shape(t)}", _ALL, False),
    ("size-color-shape", False, lambda w, t: f"{w.a(w.size(t))} {w.color(t)} {w.shape(t)}", ("shape", "color", "size"), False),
    # held out of training: phrasings only the evaluation prompts use
    ("colored", True, lambda w, t: f"{w.a(w.shape(t))}, colored {w.color(t)}, {w.pos(t)}, {w.bg()}",
     ("shape", "color", "position"), True),
    ("bg-with", True, lambda w, t: f"{w.bg()} with {w.a(w.size(t))} {w.color(t)} {w.shape(t)}",
     ("shape", "color", "size"), True),
    ("the-shape-sits", True, lambda w, t: f"the {w.shape(t)} is {w.color(t)} and sits {w.pos(t)}",
     ("shape", "color", "position"), False),
    ("draw", True, lambda w, t: f"draw {w.a(w.size(t))} {w.shape(t)} in {w.color(t)}", ("shape", "color", "size"), False),
)
PAIR_PATTERNS = (
    ("two", False, lambda w, t, u: f"{w.a(w.color(t))} {w.shape(t)} and {w.a(w.color(u))} {w.shape(u)}",
     ("shape", "color")),
    ("two-placed", False,
     lambda w, t, u: f"{w.a(w.color(t))} {w.shape(t)} {w.pos(t)} and {w.a(w.color(u))} {w.shape(u)} {w.pos(u)}",
     ("shape", "color", "position")),
    ("two-placed-comma", True,
     lambda w, t, u: f"{w.a(w.color(t))} {w.shape(t)} {w.pos(t)}, {w.a(w.color(u))} {w.shape(u)} {w.pos(u)}",
     ("shape", "color", "position")),
)


def _mention(thing: Thing, keys) -> dict:
    return {k: getattr(thing, k) for k in _ALL if k in keys}


def _phrase(rng: np.random.Generator, things: list[Thing], background: str, phrasings: str) -> tuple[str, dict]:
    """A caption for the scene in one of the allowed patterns, and what it states."""
    def allowed(held_out: bool) -> bool:
        return phrasings == "all" or held_out == (phrasings == "held_out")

    w = _Words(rng, background)
    if len(things) == 2:
        _, _, template, keys = PAIR_PATTERNS[rng.choice([i for i, p in enumerate(PAIR_PATTERNS) if allowed(p[1])])]
        return template(w, *things), {"objects": [_mention(t, keys) for t in things]}
    _, _, template, keys, says_background = SINGLE_PATTERNS[
        rng.choice([i for i, p in enumerate(SINGLE_PATTERNS) if allowed(p[1])])]
    stated = {"objects": [_mention(things[0], keys)]} | ({"background": background} if says_background else {})
    return template(w, things[0]), stated


def make_scene(rng: np.random.Generator, pairs: str = "seen", phrasings: str = "seen") -> Scene:
    """One scene and its caption. pairs="held_out" draws the first object from the pairs never seen in
    training ("all": any pair); phrasings picks the caption patterns the same way."""
    count = 2 if rng.random() < 0.25 else 1
    things: list[Thing] = []
    for _ in range(count):
        things.append(_thing(rng, pairs if pairs == "all" or not things else "seen", {t.position for t in things}))
    background = str(rng.choice(list(BACKGROUNDS)))
    caption, stated = _phrase(rng, things, background, phrasings)
    return Scene(things, background, caption, stated)


class ToyWorld(Sequence):
    """Scenes 0..size-1 of a seeded world; scene i and its rendering depend only on (seed, pairs, i).

    pairs: "seen" (training scenes: no held-out colour–shape pair), "held_out" (the first object is
    a held-out pair) or "all"; phrasings: the caption patterns, "seen" (those of training), "held_out"
    or "all". Scenes are made on first use, so a large world costs nothing until it is read. As a
    sequence, the world is its list of captions.
    """

    def __init__(self, size: int = 100_000, seed: int = 0, pairs: str = "seen", phrasings: str = "seen"):
        if pairs not in PAIRS or phrasings not in PHRASINGS:
            raise ValueError(f"pairs and phrasings are one of {PAIRS}")
        self.size, self.seed, self.pairs, self.phrasings = size, seed, pairs, phrasings
        self._scenes: dict[int, Scene] = {}

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, PAIRS.index(self.pairs), index, stream])

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if index not in self._scenes:
            self._scenes[index] = make_scene(self._rng(index, 0), self.pairs, self.phrasings)
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

    def distinct(self, count: int) -> list[int]:
        """Indices of the first `count` scenes with distinct captions (evaluation sets: one prompt once)."""
        seen: dict[str, int] = {}
        for i in range(self.size):
            seen.setdefault(self.caption(i), i)
            if len(seen) == count:
                return list(seen.values())
        raise ValueError(f"the world's {self.size} scenes hold only {len(seen)} distinct captions, not {count}")

    @staticmethod
    def vocabulary() -> list[str]:
        """Every word a caption can use, held-out phrasings included (for a word-level tokenizer)."""
        words = set(_WORDS) | {"a", "an", "the", "and", "there", "is", "against", "of", "at", "in", "on", "side", "to",
                               "near", "edge", "up", "down", "colored", "with", "sits", "draw"}
        for phrases in POSITION_PHRASES.values():
            words.update(w for phrase in phrases for w in phrase.split())
        return sorted(words | set(BACKDROPS))


# The evaluation sets of docs/toyworld.md: distinct prompts, each naming a held-out colour–shape pair
# (in training phrasings), or written in the held-out phrasings (with seen pairs).
EVALUATION_SETS = {"held_out_pairs": dict(seed=7, pairs="held_out", phrasings="seen"),
                   "held_out_phrasings": dict(seed=8, pairs="seen", phrasings="held_out")}


def evaluation_set(name: str, count: int) -> tuple[list[str], list[dict]]:
    """The first `count` distinct prompts of an evaluation set, and what each states."""
    world = ToyWorld(size=1_000_000, **EVALUATION_SETS[name])
    scenes = [world.scene(i) for i in world.distinct(count)]
    return [s.caption for s in scenes], [s.stated for s in scenes]


def clutter(rng: np.random.Generator) -> Scene:
    """A scene of random objects at all five positions: what a judge that credits any object scores high on."""
    things = [Thing(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), str(rng.choice(list(SIZES))), p)
              for p in POSITIONS]
    return Scene(things, str(rng.choice(list(BACKGROUNDS))))


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {word: name for name, words in table.items() for word in words}


_WORDS = {**{w: ("shape", v) for w, v in _lookup(SHAPE_WORDS).items()},
          **{w: ("color", v) for w, v in _lookup(COLOR_WORDS).items()},
          **{w: ("size", v) for w, v in _lookup(SIZE_WORDS).items()},
          **{w: ("position", v) for w, v in _lookup(POSITION_WORDS).items()},
          **{w: ("background", v) for w, v in _lookup(BACKGROUND_WORDS).items()}}


def parse_caption(caption: str) -> dict:
    """The attributes a toy caption states, for prompts read from a folder (any pattern, any synonym).

    The caption is cut into clauses at "and", commas and full stops; a clause naming a shape starts a
    new object unless it says "the <shape>" of one already named, and a clause without a shape adds
    to the object before it (or, first in the caption, to the next one). Background words are global.
    """
    objects: list[dict] = []
    pending: dict = {}
    stated: dict = {}
    for clause in re.split(r"\s+and\s+|,|\.", caption.lower()):
        words = clause.split()
        thing: dict = {}
        for k, word in enumerate(words):
            kind, value = _WORDS.get(word, (None, None))
            if kind == "background":
                stated["background"] = value
            elif kind:
                thing[kind] = value
        if not thing:
            continue
        if "shape" not in thing:
            (objects[-1] if objects else pending).update(thing)
            continue
        shape_at = next(k for k, w in enumerate(words) if _WORDS.get(w, ("",))[0] == "shape")
        earlier = [o for o in objects if o.get("shape") == thing["shape"]]
        if shape_at > 0 and words[shape_at - 1] == "the" and earlier:
            earlier[-1].update(thing)
        else:
            objects.append({**pending, **thing})
            pending = {}
    return {"objects": objects, **stated}


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
    is there and its shape, colour and size. Each object the prompt names is matched to one
    detected object (no two to the same one), choosing the matching that agrees with the prompt
    on the most attributes. A detected object stands for a named one only if it shows the stated
    shape or colour, so a stated position or size is not credited because some other object
    stands there.
    """
    hits = {k: [0, 0] for k in ATTRIBUTE_KINDS}
    if "background" in stated:
        hits["background"] = [int(reading["background"] == stated["background"]), 1]
    wanted = stated["objects"]
    for thing in wanted:
        for k in thing:
            hits[k][1] += 1

    def agree(thing: dict, p: str | None) -> list[str]:
        if p is None:
            return []
        found = [k for k in thing if (p == thing[k] if k == "position" else reading[k][p] == thing[k])]
        identity = [k for k in ("shape", "color") if k in thing]
        # an object is the named one only if it shows the stated shape or colour; else nothing of it counts
        return found if not identity or any(k in found for k in identity) else []

    detected = [p for p in POSITION_NAMES if reading["present"][p]]
    slots = detected + [None] * len(wanted)  # None: a named object the image does not show
    best: list[list[str]] = [[] for _ in wanted]
    for chosen in itertools.permutations(slots, len(wanted)):
        found = [agree(thing, p) for thing, p in zip(wanted, chosen)]
        if sum(map(len, found)) > sum(map(len, best)):
            best = found
    for found in best:
        for k in found:
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
