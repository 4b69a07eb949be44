"""detail-VQA: a seeded, procedurally generated VQA set whose answers sit in small, localised detail.

easy-VQA shows one large shape on a flat background, so any spread-out sample of
visual tokens answers it and every pre-LLM pruning method ties with random
selection. Here a 128x128 canvas holds 4-8 small shapes (10-14 px) in a 3x3 grid
of named cells (one shape per cell at a random offset inside it) and a
two-digit number drawn small (seven-segment glyphs, 9x15 px, 2 px strokes, one
glyph every 16 px) in one of the empty cells. Questions (one word / number each):

    count_color   how many red shapes are there?                           0-8
    count_shape   how many circles are there?                              0-8
    color_at      what color is the shape in the top left?                 a colour
    left_of       which is further left, the red circle or the blue square? a colour (one of the two named)
    read_digits   what number is written?                                  two digits, e.g. 07

Everything is a pure function of the seed: `make_scene(seed)` draws the scene
description (objects with shape, colour, position, size and grid cell; the
digit string and its box), `render(scene)` rasterises it with NumPy alone (no
fonts, no PIL drawing), and `questions(scene, seed)` computes each answer from
the description. Split `s`, image `i` uses seed (SPLIT_SEEDS[s], i). A split
asks EVAL_TYPES (one question of each type) per image; `questions(...,
dense=True)` asks every question the scene supports (the training recipe).

The generator was fixed before any pruning method was run on it; nothing in it
is tuned to favour a method.

    from jax_pruning.eval.datasets import open_dataset
    data = open_dataset("detail-vqa", split="test")      # 1,000 images x 5 questions
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

CANVAS = 128  # square canvas, px
GRID = 3  # 3x3 named cells
BACKGROUND = (235, 235, 235)
INK = (20, 20, 20)  # the digits
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
          "purple": (150, 60, 190)}
SHAPES = ("circle", "square", "triangle")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}
ROWS, COLS = ("top", "middle", "bottom"), ("left", "middle", "right")
MIN_SHAPES, MAX_SHAPES = 4, 8
MIN_SIZE, MAX_SIZE = 10, 14  # shape side / diameter, px
MARGIN = 2  # px between a shape (or the digits) and its cell's border
DIGITS = 2
GLYPH_W, GLYPH_H, STROKE, GLYPH_GAP = 9, 15, 2, 7
MIN_LEFT_GAP = 8  # px between the centres of the two objects of a left_of question
QUESTION_TYPES = ("count_color", "count_shape", "color_at", "left_of", "read_digits")
EVAL_TYPES = QUESTION_TYPES  # one question of each type per image
SPLIT_SEEDS = {"train": 0, "test": 1}
SPLIT_IMAGES = {"train": 100_000, "test": 1_000}

# seven segments: a top, b top right, c bottom right, d bottom, e bottom left, f top left, g middle
SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg", "6": "acdefg",
            "7": "abc", "8": "abcdefg", "9": "abcdfg"}


def cell_name(row: int, col: int) -> str:
    """Grid cell -> its name: "top left", "top middle", ..., "center", ..., "bottom right"."""
    if (row, col) == (1, 1):
        return "center"
    return f"{ROWS[row]} {COLS[col]}"


CELL_NAMES = tuple(cell_name(r, c) for r in range(GRID) for c in range(GRID))


def cell_bounds(index: int) -> tuple[int, int]:
    """[start, end) in px of grid row/column `index` (integer split of the canvas)."""
    return index * CANVAS // GRID, (index + 1) * CANVAS // GRID


@dataclasses.dataclass(frozen=True)
class Shape:
    shape: str  # one of SHAPES
    color: str  # one of COLORS
    x: int  # top-left corner of its size x size box, px
    y: int
    size: int
    row: int  # grid cell
    col: int

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.size / 2, self.y + self.size / 2

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Digits:
    text: str
    x: int  # top-left corner of the string's box
    y: int
    row: int
    col: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive."""
        width = len(self.text) * GLYPH_W + (len(self.text) - 1) * GLYPH_GAP
        return self.x, self.y, self.x + width, self.y + GLYPH_H


@dataclasses.dataclass(frozen=True)
class Scene:
    seed: tuple[int, ...]
    objects: tuple[Shape, ...]
    digits: Digits

    def to_dict(self) -> dict:
        return {"seed": list(self.seed), "canvas": CANVAS,
                "objects": [dataclasses.asdict(o) | {"center": list(o.center)} for o in self.objects],
                "digits": dataclasses.asdict(self.digits) | {"box": list(self.digits.box)}}


@dataclasses.dataclass(frozen=True)
class Question:
    type: str  # one of QUESTION_TYPES
    text: str
    answer: str


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(list(seed) if isinstance(seed, (tuple, list)) else seed)


def _seed_tuple(seed) -> tuple[int, ...]:
    return tuple(int(s) for s in seed) if isinstance(seed, (tuple, list)) else (int(seed),)


def make_scene(seed) -> Scene:
    """The scene drawn from `seed` (an int or a tuple of ints). Redraws until a left_of question exists."""
    rng = _rng(seed)
    while True:
        cells = rng.permutation(GRID * GRID)
        digit_cell, n = int(cells[0]), int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
        objects = []
        for cell in cells[1:1 + n]:
            row, col = divmod(int(cell), GRID)
            size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
            (x0, x1), (y0, y1) = cell_bounds(col), cell_bounds(row)
            x = int(rng.integers(x0 + MARGIN, x1 - MARGIN - size + 1))
            y = int(rng.integers(y0 + MARGIN, y1 - MARGIN - size + 1))
            objects.append(Shape(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), x, y, size, row, col))
        objects.sort(key=lambda o: (o.row, o.col))
        text = "".join(str(d) for d in rng.integers(0, 10, DIGITS))
        row, col = divmod(digit_cell, GRID)
        width = DIGITS * GLYPH_W + (DIGITS - 1) * GLYPH_GAP
        (x0, x1), (y0, y1) = cell_bounds(col), cell_bounds(row)
        digits = Digits(text, int(rng.integers(x0 + MARGIN, x1 - MARGIN - width + 1)),
                        int(rng.integers(y0 + MARGIN, y1 - MARGIN - GLYPH_H + 1)), row, col)
        scene = Scene(_seed_tuple(seed), tuple(objects), digits)
        if left_of_pairs(scene):
            return scene


def split_seed(name: str, split: str, index: int, seeds: dict, sizes: dict, item: str = "image") -> tuple[int, int]:
    """The seed (seeds[split], index) of item `index` of a generated set's split, both checked."""
    if split not in seeds:
        raise ValueError(f"{name}: unknown split {split!r}; valid: {', '.join(seeds)}")
    if not 0 <= index < sizes[split]:
        raise IndexError(f"{name} {split}: {item} {index} outside 0..{sizes[split] - 1}")
    return seeds[split], index


def scene_of(split: str, index: int) -> Scene:
    """Image `index` of a split (seed (SPLIT_SEEDS[split], index))."""
    return make_scene(split_seed("detail-vqa", split, index, SPLIT_SEEDS, SPLIT_IMAGES))


# ---- rendering -------------------------------------------------------------------------------------------

def _shape_mask(obj: Shape) -> np.ndarray:
    """[size, size] bool: pixels whose centres fall inside the shape."""
    s = obj.size
    v, u = np.mgrid[0:s, 0:s] + 0.5  # pixel centres, relative to the box
    if obj.shape == "square":
        return np.ones((s, s), bool)
    if obj.shape == "circle":
        return (u - s / 2) ** 2 + (v - s / 2) ** 2 <= (s / 2) ** 2
    # triangle pointing up: apex (s/2, 0), base from (0, s) to (s, s)
    return (v <= s) & (2 * np.abs(u - s / 2) <= v)


def glyph(digit: str) -> np.ndarray:
    """[GLYPH_H, GLYPH_W] bool seven-segment glyph of one digit."""
    h, w, t = GLYPH_H, GLYPH_W, STROKE
    mid = (h - t) // 2
    on = np.zeros((h, w), bool)
    boxes = {"a": (0, t, 0, w), "g": (mid, mid + t, 0, w), "d": (h - t, h, 0, w),
             "f": (0, mid + t, 0, t), "b": (0, mid + t, w - t, w),
             "e": (mid, h, 0, t), "c": (mid, h, w - t, w)}
    for segment in SEGMENTS[digit]:
        r0, r1, c0, c1 = boxes[segment]
        on[r0:r1, c0:c1] = True
    return on


def render(scene: Scene) -> np.ndarray:
    """[CANVAS, CANVAS, 3] uint8 RGB image of the scene."""
    image = np.empty((CANVAS, CANVAS, 3), np.uint8)
    image[:] = BACKGROUND
    for obj in scene.objects:
        window = image[obj.y:obj.y + obj.size, obj.x:obj.x + obj.size]
        window[_shape_mask(obj)] = COLORS[obj.color]
    d = scene.digits
    for k, digit in enumerate(d.text):
        x = d.x + k * (GLYPH_W + GLYPH_GAP)
        image[d.y:d.y + GLYPH_H, x:x + GLYPH_W][glyph(digit)] = INK
    return image


def image(scene: Scene):
    """The scene as an RGB PIL image."""
    from PIL import Image

    return Image.fromarray(render(scene), "RGB")


def png_bytes(scene: Scene) -> bytes:
    buffer = io.BytesIO()
    image(scene).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- questions and answers -------------------------------------------------------------------------------

def left_of_pairs(scene: Scene) -> list[tuple[Shape, Shape]]:
    """Pairs (a, b) that a left_of question may name: colours differ, each "colour shape" names one object
    in the scene, centres at least MIN_LEFT_GAP px apart horizontally; a is the one further left."""
    names = [o.name for o in scene.objects]
    unique = [o for o in scene.objects if names.count(o.name) == 1]
    pairs = []
    for i, a in enumerate(unique):
        for b in unique[i + 1:]:
            if a.color != b.color and abs(a.center[0] - b.center[0]) >= MIN_LEFT_GAP:
                pairs.append((a, b) if a.center[0] < b.center[0] else (b, a))
    return pairs


def count_color_q(scene: Scene, color: str) -> Question:
    n = sum(o.color == color for o in scene.objects)
    return Question("count_color", f"how many {color} shapes are there?", str(n))


def count_shape_q(scene: Scene, shape: str) -> Question:
    n = sum(o.shape == shape for o in scene.objects)
    return Question("count_shape", f"how many {PLURALS[shape]} are there?", str(n))


def color_at_q(obj: Shape) -> Question:
    return Question("color_at", f"what color is the shape in the {cell_name(obj.row, obj.col)}?", obj.color)


def left_of_q(left: Shape, right: Shape, left_first: bool) -> Question:
    first, second = (left, right) if left_first else (right, left)
    return Question("left_of", f"which is further left, the {first.name} or the {second.name}?", left.color)


def digits_q(scene: Scene) -> Question:
    return Question("read_digits", "what number is written?", scene.digits.text)


def questions(scene: Scene, seed=None, *, dense: bool = False, max_left_of: int = 4) -> list[Question]:
    """One question of each type (EVAL_TYPES order), drawn with `seed` (default: the scene's seed);
    dense: every count, every occupied cell, up to `max_left_of` left_of pairs and the digits."""
    rng = _rng((*_seed_tuple(scene.seed if seed is None else seed), 7))
    pairs = left_of_pairs(scene)
    if dense:
        out = [count_color_q(scene, c) for c in COLORS] + [count_shape_q(scene, s) for s in SHAPES]
        out += [color_at_q(o) for o in scene.objects]
        for k in rng.permutation(len(pairs))[:max_left_of]:
            out.append(left_of_q(*pairs[k], left_first=bool(rng.integers(2))))
        return out + [digits_q(scene)]
    left, right = pairs[int(rng.integers(len(pairs)))]
    return [count_color_q(scene, str(rng.choice(list(COLORS)))), count_shape_q(scene, str(rng.choice(SHAPES))),
            color_at_q(scene.objects[int(rng.integers(len(scene.objects)))]),
            left_of_q(left, right, left_first=bool(rng.integers(2))), digits_q(scene)]


def question_type(text: str) -> str:
    """The type (one of QUESTION_TYPES) of a question written by this module."""
    if text.startswith("how many "):
        return "count_color" if text.endswith(" shapes are there?") else "count_shape"
    if text.startswith("what color is"):
        return "color_at"
    if text.startswith("which is further left"):
        return "left_of"
    if text == "what number is written?":
        return "read_digits"
    raise ValueError(f"not a detail-VQA question: {text!r}")


def answer_vocabulary() -> tuple[str, ...]:
    """Every answer a question can have except the digit strings (DIGITS digits 0-9)."""
    return tuple(str(n) for n in range(MAX_SHAPES + 1)) + tuple(COLORS)


def words() -> list[str]:
    """Every word of every question template and answer (digit strings excluded), sorted."""
    import re

    texts = ["how many shapes are there?", "what color is the shape in the?", "which is further left, the or the?",
             "what number is written?", *COLORS, *SHAPES, *PLURALS.values(), *CELL_NAMES, *answer_vocabulary()]
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t.lower())})


# ---- as an evaluation dataset ----------------------------------------------------------------------------

def open_detail_vqa(split: str = "test", *, limit: int | None = None, seed: int | None = None,
                    images: int | None = None):
    """The split as a Dataset of len(EVAL_TYPES) questions per image (row r: image r // 5, question r % 5).
    `images` shortens the split to its first n images (default SPLIT_IMAGES[split])."""
    from jax_pruning.eval.samples import Dataset, Sample, choose_rows

    if split not in SPLIT_SEEDS:
        raise ValueError(f"detail-vqa: unknown split {split!r}; valid: {', '.join(SPLIT_SEEDS)}")
    n_images = SPLIT_IMAGES[split] if images is None else min(images, SPLIT_IMAGES[split])
    per = len(EVAL_TYPES)

    def make(row: int) -> Sample:
        index, k = divmod(row, per)
        scene = scene_of(split, index)
        q = questions(scene)[k]
        return Sample(id=f"detail-vqa-{split}-{row}", question=q.text, answers=[q.answer], task="exact_match",
                      load_image=lambda: image(scene),
                      meta={"dataset": "detail-vqa", "image_id": index, "type": q.type})

    return Dataset("detail-vqa", choose_rows(n_images * per, limit, seed).tolist(), make)
