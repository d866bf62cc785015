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
    held = ToyWorld(seed=0, held_out=True)
    assert all((held.scene(i).things[0].color, held.scene(i).things[0].shape) in HELD_OUT_PAIRS for i in range(200))


def test_several_phrasings_and_partial_captions():
    world = ToyWorld(seed=0)
    captions = [world.caption(i) for i in range(1000)]
    openings = {c.split()[0] for c in captions}
    assert {"there", "a", "an"} <= openings and any(", " in c for c in captions) and any(" canvas" in c for c in captions)
    assert any(" and " in c for c in captions)
    short = [c for c in captions if len(c.split()) == 3]  # "a red star": size, position, background left open
    assert len(short) > 50
    assert all(w in world.vocabulary() for c in captions for w in c.replace(",", "").split())


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

    for held_out in (False, True):
        world = ToyWorld(seed=2, held_out=held_out)
        assert all(parse_caption(world.caption(i)) == world.scene(i).stated for i in range(500))
