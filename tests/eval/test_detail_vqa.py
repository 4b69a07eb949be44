"""detail-VQA generator: seeded determinism, and every answer checked by a second computation.

The second computation reads the question text back (regular expressions), works from the scene's plain
dict form (`Scene.to_dict`) with its own geometry (grid cell from the centre coordinates, not the stored
row/col), and cross-checks the rendered pixels: each colour's connected blobs are counted and the digits are
read back off the image by sampling the seven segments.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from jax_pruning.eval import detail_vqa as dv
from jax_pruning.eval.datasets import DATASETS, open_dataset

N_SCENES = 240
ROW_WORDS, COL_WORDS = {"top": 0, "middle": 1, "bottom": 2}, {"left": 0, "middle": 1, "right": 2}
# segment -> the pixel (dx, dy) inside a 7x13 glyph that only that segment covers (stroke 2)
SEGMENT_PROBES = {"a": (4, 0), "b": (8, 3), "c": (8, 11), "d": (4, 14), "e": (0, 11), "f": (0, 3), "g": (4, 6)}
DIGIT_OF_SEGMENTS = {frozenset(v): k for k, v in {
    "0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd", "6": "afgedc", "7": "abc",
    "8": "abcdefg", "9": "abcdfg"}.items()}


def second_answer(scene: dict, question: str) -> str:
    """The answer, recomputed from the scene dict and the question's words alone."""
    objects = scene["objects"]
    side = scene["canvas"]

    def centre(o):
        return o["x"] + o["size"] / 2, o["y"] + o["size"] / 2

    if m := re.fullmatch(r"how many (\w+) shapes are there\?", question):
        return str(len([o for o in objects if o["color"] == m.group(1)]))
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return str(len([o for o in objects if o["shape"] == m.group(1)]))
    if m := re.fullmatch(r"what color is the shape in the (.+)\?", question):
        words = m.group(1).split()
        row, col = (1, 1) if words == ["center"] else (ROW_WORDS[words[0]], COL_WORDS[words[1]])
        inside = [o for o in objects if (int(centre(o)[1] * 3 // side), int(centre(o)[0] * 3 // side)) == (row, col)]
        assert len(inside) == 1, (question, inside)
        return inside[0]["color"]
    if m := re.fullmatch(r"which is further left, the (\w+) (\w+) or the (\w+) (\w+)\?", question):
        named = []
        for colour, shape in ((m.group(1), m.group(2)), (m.group(3), m.group(4))):
            matches = [o for o in objects if o["color"] == colour and o["shape"] == shape]
            assert len(matches) == 1, (question, matches)
            named.append(matches[0])
        (xa, _), (xb, _) = centre(named[0]), centre(named[1])
        assert abs(xa - xb) >= 8 and named[0]["color"] != named[1]["color"]
        return named[0]["color"] if xa < xb else named[1]["color"]
    if question == "what number is written?":
        return scene["digits"]["text"]
    raise AssertionError(f"unknown question template: {question!r}")


def read_digits(pixels: np.ndarray, digits: dict) -> str:
    x0, y0, x1, y1 = digits["box"]
    ink = (pixels == dv.INK).all(-1)
    out = ""
    for k in range(len(digits["text"])):
        gx = x0 + k * 16
        lit = frozenset(s for s, (dx, dy) in SEGMENT_PROBES.items() if ink[y0 + dy, gx + dx])
        out += DIGIT_OF_SEGMENTS[lit]
    assert gx + 9 == x1 and y0 + 15 == y1
    return out


def blob_counts(pixels: np.ndarray) -> dict[str, int]:
    """Connected blobs of each shape colour in the image."""
    return {name: int(ndimage.label((pixels == rgb).all(-1))[1]) for name, rgb in dv.COLORS.items()}


@pytest.fixture(scope="module")
def scenes():
    return [dv.make_scene((123, i)) for i in range(N_SCENES)]


def test_same_seed_same_bytes_and_questions():
    for seed in [(0, 0), (1, 5), 42]:
        a, b = dv.make_scene(seed), dv.make_scene(seed)
        assert a == b and a.to_dict() == b.to_dict()
        assert dv.png_bytes(a) == dv.png_bytes(b)
        assert dv.render(a).tobytes() == dv.render(b).tobytes()
        assert dv.questions(a) == dv.questions(b) and dv.questions(a, dense=True) == dv.questions(b, dense=True)
    assert dv.scene_of("test", 3) == dv.make_scene((dv.SPLIT_SEEDS["test"], 3))
    assert dv.png_bytes(dv.scene_of("test", 0)) != dv.png_bytes(dv.scene_of("train", 0))
    assert dv.png_bytes(dv.scene_of("test", 0)) != dv.png_bytes(dv.scene_of("test", 1))


def test_answers_agree_with_a_second_computation(scenes):
    checked = 0
    for scene in scenes:
        description = scene.to_dict()
        for q in dv.questions(scene) + dv.questions(scene, dense=True):
            assert second_answer(description, q.text) == q.answer, (scene.seed, q)
            checked += 1
    assert checked > 20 * N_SCENES


def test_rendered_pixels_match_the_description(scenes):
    for scene in scenes:
        pixels, description = dv.render(scene), scene.to_dict()
        assert pixels.shape == (dv.CANVAS, dv.CANVAS, 3) and pixels.dtype == np.uint8
        counts = blob_counts(pixels)
        for colour in dv.COLORS:
            assert counts[colour] == sum(o["color"] == colour for o in description["objects"])
        for o in description["objects"]:
            cx, cy = int(o["x"] + o["size"] // 2), int(o["y"] + o["size"] // 2)
            assert tuple(pixels[cy, cx]) == dv.COLORS[o["color"]]
            x0, y0 = o["x"], o["y"]  # a square fills its box; circles and triangles leave corners empty
            corner_filled = tuple(pixels[y0, x0]) == dv.COLORS[o["color"]]
            assert corner_filled == (o["shape"] == "square")
        assert read_digits(pixels, description["digits"]) == description["digits"]["text"]


def test_scene_layout(scenes):
    """4-8 shapes of 10-14 px inside their own named cell, the digits in an empty cell, nothing overlapping."""
    for scene in scenes:
        d = scene.to_dict()
        assert dv.MIN_SHAPES <= len(d["objects"]) <= dv.MAX_SHAPES
        cells = set()
        for o in d["objects"]:
            assert dv.MIN_SIZE <= o["size"] <= dv.MAX_SIZE
            lo_x, hi_x = o["col"] * 128 // 3, (o["col"] + 1) * 128 // 3
            lo_y, hi_y = o["row"] * 128 // 3, (o["row"] + 1) * 128 // 3
            assert lo_x < o["x"] and o["x"] + o["size"] < hi_x and lo_y < o["y"] and o["y"] + o["size"] < hi_y
            cells.add((o["row"], o["col"]))
        assert len(cells) == len(d["objects"])
        assert (d["digits"]["row"], d["digits"]["col"]) not in cells
        assert re.fullmatch(r"\d{2}", d["digits"]["text"])


def test_question_types_and_vocabulary(scenes):
    vocabulary = set(dv.answer_vocabulary())
    seen_types, seen_answers = set(), {t: set() for t in dv.QUESTION_TYPES}
    for scene in scenes:
        qs = dv.questions(scene)
        assert [q.type for q in qs] == list(dv.EVAL_TYPES)
        for q in qs + dv.questions(scene, dense=True):
            seen_types.add(q.type)
            seen_answers[q.type].add(q.answer)
            if q.type == "read_digits":
                assert re.fullmatch(r"\d{2}", q.answer)
            else:
                assert q.answer in vocabulary and " " not in q.answer
            if q.type == "left_of":  # the answer is one of the two colours named
                assert q.answer in q.text.split()
            assert set(re.findall(r"\w+|[^\w\s]+", q.text)) <= set(dv.words())
    assert seen_types == set(dv.QUESTION_TYPES)
    assert seen_answers["color_at"] == set(dv.COLORS) and seen_answers["left_of"] == set(dv.COLORS)
    assert {"0", "1", "2", "3"} <= seen_answers["count_color"] and {"1", "2", "3", "4"} <= seen_answers["count_shape"]
    assert len(seen_answers["read_digits"]) > 75  # of 100 two-digit strings


def test_open_dataset():
    assert "detail-vqa" in DATASETS
    data = open_dataset("detail-vqa", split="test")
    assert len(data) == dv.SPLIT_IMAGES["test"] * len(dv.EVAL_TYPES)
    first = data[:5]
    assert [s.meta["type"] for s in first] == list(dv.EVAL_TYPES)
    assert len({s.meta["image_id"] for s in first}) == 1
    assert first[0].task == "exact_match" and first[0].image.size == (128, 128) and first[0].image.mode == "RGB"
    assert np.array_equal(np.asarray(first[0].image), dv.render(dv.scene_of("test", 0)))
    scene = dv.scene_of("test", 0)
    assert [(s.question, s.answers) for s in first] == [(q.text, [q.answer]) for q in dv.questions(scene)]
    alias = open_dataset("detail_vqa", split="train", limit=7)
    assert len(alias) == 7 and alias[6].meta["image_id"] == 1
    subset = open_dataset("detail-vqa", limit=10, seed=0)
    assert [s.id for s in subset] == [s.id for s in open_dataset("detail-vqa", limit=10, seed=0)]
    with pytest.raises(ValueError, match="unknown split"):
        open_dataset("detail-vqa", split="validation")
