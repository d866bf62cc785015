"""The procedural toy world: seeded, varied, held-out pairs kept out, captions that match the pictures."""

import json

import numpy as np

from dicecli.plugins.toy.world import BACKGROUNDS, COLORS, HELD_OUT_PAIRS, POSITIONS, SHAPES, SIZES, ToyWorld


def test_world_is_big_enough():
    assert len(SHAPES) >= 4 and len(COLORS) >= 6 and len(SIZES) == 2 and len(POSITIONS) >= 5 and len(BACKGROUNDS) >= 4


def test_seeded_and_deterministic():
    a, b = ToyWorld(seed=3), ToyWorld(seed=3)
    assert [a.caption(i) for i in range(50)] == [b.caption(i) for i in range(50)]
    assert np.array_equal(np.asarray(a.image(7)), np.asarray(b.image(7)))
    assert a.image(7).size == (64, 64)
    assert [a.caption(i) for i in range(50)] != [ToyWorld(seed=4).caption(i) for i in range(50)]


def test_held_out_pairs_never_in_training_scenes():
    world = ToyWorld(seed=0)
    pairs = {(t.color, t.shape) for i in range(5000) for t in world.scene(i).things}
    assert not pairs & set(HELD_OUT_PAIRS)
    assert len(pairs) == len(COLORS) * len(SHAPES) - len(HELD_OUT_PAIRS)
    held = ToyWorld(seed=0, pairs="held_out")
    assert all((held.scene(i).things[0].color, held.scene(i).things[0].shape) in HELD_OUT_PAIRS for i in range(200))
    every = ToyWorld(seed=0, pairs="all")  # what the evaluator is trained on
    assert {(t.color, t.shape) for i in range(5000) for t in every.scene(i).things} >= set(HELD_OUT_PAIRS)


def _pattern(caption: str) -> str:
    """The phrasing pattern of a caption: its words with every attribute word replaced by its kind."""
    from dicecli.plugins.toy.world import _WORDS

    return " ".join(_WORDS.get(w, (w,))[0] for w in caption.replace(",", " ,").replace(".", " .").split())


def test_many_phrasings_synonyms_and_held_out_patterns():
    from dicecli.plugins.toy.world import PAIR_PATTERNS, SINGLE_PATTERNS

    assert len(SINGLE_PATTERNS) + len(PAIR_PATTERNS) >= 12
    held_patterns = [p for p in SINGLE_PATTERNS + PAIR_PATTERNS if p[1]]
    assert len(held_patterns) >= 4
    train = ToyWorld(seed=0)
    captions = [train.caption(i) for i in range(4000)]
    held = ToyWorld(seed=0, phrasings="held_out")
    held_captions = [held.caption(i) for i in range(1000)]
    # no training caption is written in a held-out pattern, and the held-out ones use patterns training never does
    assert not {_pattern(c) for c in captions} & {_pattern(c) for c in held_captions}
    assert len({_pattern(c) for c in captions}) > 12
    words = {w for c in captions for w in c.replace(",", " ").replace(".", " ").split()}
    assert {"crimson", "violet", "turquoise", "disc", "rhombus", "box", "gray", "dark", "middle", "big", "tiny"} <= words
    short = [c for c in captions if len(c.split()) == 3]  # "a red star": size, position, background left open
    assert len(short) > 100
    vocabulary = set(ToyWorld.vocabulary())
    assert all(w in vocabulary for c in captions + held_captions for w in c.replace(",", " ").replace(".", " ").split())


def test_evaluation_sets_hold_distinct_prompts():
    from dicecli.plugins.toy.world import evaluation_set

    prompts, stated = evaluation_set("held_out_pairs", 300)
    assert len(set(prompts)) == 300 and len(stated) == 300
    assert all((s["objects"][0]["color"], s["objects"][0]["shape"]) in HELD_OUT_PAIRS for s in stated)
    phrasings, _ = evaluation_set("held_out_phrasings", 100)
    assert len(set(phrasings)) == 100 and not set(phrasings) & {ToyWorld(seed=0).caption(i) for i in range(2000)}


def _reading(objects: dict, background: str = "grey") -> dict:
    """An evaluator answer: {position: (shape, colour, size)}."""
    from dicecli.plugins.toy.world import POSITION_NAMES

    return {"background": background, "present": {p: p in objects for p in POSITION_NAMES},
            "shape": {p: objects.get(p, ("circle",))[0] for p in POSITION_NAMES},
            "color": {p: objects.get(p, (None, "red"))[1] for p in POSITION_NAMES},
            "size": {p: objects.get(p, (None, None, "small"))[2] for p in POSITION_NAMES}}


def test_position_and_size_count_only_for_the_named_object():
    from dicecli.plugins.toy.world import attribute_hits, parse_caption

    stated = parse_caption("a large red star at the top")
    right = _reading({"top": ("star", "red", "large")})
    assert attribute_hits(stated, right) == {"background": (0, 0), "shape": (1, 1), "color": (1, 1), "size": (1, 1),
                                             "position": (1, 1)}
    # a blue circle stands at the top, the red star on the left: the star is found, its position is wrong
    moved = _reading({"top": ("circle", "blue", "large"), "left": ("star", "red", "large")})
    assert attribute_hits(stated, moved)["position"] == (0, 1) and attribute_hits(stated, moved)["shape"] == (1, 1)
    # only some other object at the top: nothing of it counts for the star
    other = _reading({"top": ("circle", "blue", "large")})
    assert sum(found for found, _ in attribute_hits(stated, other).values()) == 0
    # two named objects are matched to two different detected ones
    two = parse_caption("a red star and a red circle")
    assert attribute_hits(two, _reading({"left": ("star", "red", "small")}))["color"] == (1, 2)


def test_named_colour_is_drawn_where_the_caption_says():
    world = ToyWorld(seed=1)
    palette = {**{f"c:{k}": v for k, v in COLORS.items()}, **{f"b:{k}": v for k, v in BACKGROUNDS.items()}}
    hits = total = 0
    for i in range(300):
        scene = world.scene(i)
        if len(scene.things) != 1:
            continue
        thing = scene.things[0]
        x, y = (int(v * 64) for v in POSITIONS[thing.position])
        pixel = np.asarray(world.image(i))[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(0)
        nearest = min(palette, key=lambda k: np.sum((np.array(palette[k]) - pixel) ** 2))
        hits += nearest == f"c:{thing.color}"
        total += 1
    assert hits / total > 0.85, (hits, total)


def test_toy_data_source_for_distill(dice, tmp_path):
    result = dice("distill", "--model", "tiny-sd15", "--data", "toy", "--steps", "1", "--batch-size", "2",
                  "--resolution", "32", "--work-dir", tmp_path / "w", "-o", tmp_path / "e.safetensors", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 1


def test_captions_parse_back_to_their_attributes():
    from dicecli.plugins.toy.world import parse_caption

    for pairs in ("seen", "held_out"):
        for phrasings in ("seen", "held_out"):
            world = ToyWorld(seed=2, pairs=pairs, phrasings=phrasings)
            assert all(parse_caption(world.caption(i)) == world.scene(i).stated for i in range(1000))
    # as users write them
    assert parse_caption("the star is at the top. it is crimson") == {"objects": [{"shape": "star", "position": "top",
                                                                                   "color": "red"}]}
    assert parse_caption("on a gray canvas, a tiny violet disc in the middle") == {
        "objects": [{"size": "small", "color": "purple", "shape": "circle", "position": "center"}], "background": "grey"}
