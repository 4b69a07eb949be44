"""moving-shapes: a seeded, procedurally generated video QA set whose answers need time.

Each clip is FRAMES frames of SIDE x SIDE px on a flat background, every object a
different colour:

- 1-2 static shapes, there from the first frame to the last;
- one mover: it goes STEP px a frame left, right, up or down;
- two arrivals: each appears at the start of a later temporal patch (frames
  2, 4 or 6, the two at different ones) and stays.

Questions (one word each):

    direction      which way does the moving shape go?   left / right / up / down
    moving_color   what color is the moving shape?       a colour
    appears_last   what color appears last?              a colour (the later arrival)

A single frame answers none of them: the mover looks like any static shape and
the arrivals like shapes that were always there. Arrivals start on even frames so
that a model pairing frames into temporal patches (Qwen-VL: 2 frames a patch)
never sees half an arrival.

Everything is a pure function of the seed: `make_clip(seed)` draws the
description, `render(clip)` rasterises its frames with NumPy alone, and
`questions(clip)` computes each answer from the description. Split `s`, clip `i`
uses seed (SPLIT_SEEDS[s], i). `export_jsonl(folder, split, clips)` writes a
split as GIFs + a JSONL file that `jaxprune eval --data jsonl:PATH` reads.

    from jax_pruning.eval.datasets import open_dataset
    data = open_dataset("moving-shapes", split="test")      # 500 clips x 3 questions
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from jax_pruning.eval.detail_vqa import COLORS, SHAPES, _rng, _seed_tuple, _shape_mask, split_seed
from jax_pruning.eval.samples import Clip as Video
from jax_pruning.eval.samples import Dataset, Sample, choose_rows

SIDE = 48  # px, square frames
FRAMES = 8
FPS = 2.0  # the clip's nominal frame rate (what Qwen2.5-VL / Qwen3-VL positions use)
BACKGROUND = (235, 235, 235)
STEP = 3  # px a frame the mover goes
MIN_SIZE, MAX_SIZE = 8, 10
ARRIVAL_FRAMES = (2, 4, 6)  # starts of temporal patches 1-3
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
QUESTION_TYPES = ("direction", "moving_color", "appears_last")
SPLIT_SEEDS = {"train": 10, "test": 11}
SPLIT_CLIPS = {"train": 100_000, "test": 500}
GAP = 1  # px kept free between any two objects' boxes (over the whole clip)


@dataclasses.dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    x: int  # top-left corner of its box in its first frame, px
    y: int
    size: int
    first_frame: int = 0  # 0: there from the start
    direction: str | None = None  # the mover only

    def position(self, frame: int) -> tuple[int, int]:
        dx, dy = DIRECTIONS[self.direction] if self.direction else (0, 0)
        return self.x + STEP * dx * frame, self.y + STEP * dy * frame

    def swept_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive: every pixel it covers in any frame."""
        (xa, ya), (xb, yb) = self.position(0), self.position(FRAMES - 1)
        return min(xa, xb), min(ya, yb), max(xa, xb) + self.size, max(ya, yb) + self.size


@dataclasses.dataclass(frozen=True)
class Clip:
    seed: tuple[int, ...]
    things: tuple[Thing, ...]  # static shapes, then the mover, then the arrivals (earlier first)

    @property
    def mover(self) -> Thing:
        return next(t for t in self.things if t.direction)

    @property
    def arrivals(self) -> list[Thing]:
        return sorted((t for t in self.things if t.first_frame > 0), key=lambda t: t.first_frame)

    def to_dict(self) -> dict:
        return {"seed": list(self.seed), "side": SIDE, "frames": FRAMES, "step": STEP,
                "things": [dataclasses.asdict(t) for t in self.things]}


@dataclasses.dataclass(frozen=True)
class Question:
    type: str
    text: str
    answer: str


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def make_clip(seed) -> Clip:
    """The clip drawn from `seed` (an int or a tuple of ints); objects are redrawn until none overlap."""
    rng = _rng(seed)
    while True:
        colors = [str(c) for c in rng.permutation(list(COLORS))]
        n_static = int(rng.integers(1, 3))
        first, second = sorted(int(f) for f in rng.choice(ARRIVAL_FRAMES, 2, replace=False))
        size = lambda: int(rng.integers(MIN_SIZE, MAX_SIZE + 1))  # noqa: E731
        shape = lambda: str(rng.choice(SHAPES))  # noqa: E731
        direction = str(rng.choice(list(DIRECTIONS)))
        s = size()
        travel = STEP * (FRAMES - 1)
        dx, dy = DIRECTIONS[direction]
        x_lo, x_hi = (travel, SIDE - s) if dx < 0 else (0, SIDE - s - travel) if dx > 0 else (0, SIDE - s)
        y_lo, y_hi = (travel, SIDE - s) if dy < 0 else (0, SIDE - s - travel) if dy > 0 else (0, SIDE - s)
        mover = Thing(shape(), colors[n_static], int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1)),
                      s, 0, direction)
        things = [mover]
        for k, first_frame in [(i, 0) for i in range(n_static)] + [(n_static + 1, first), (n_static + 2, second)]:
            s = size()
            things.append(Thing(shape(), colors[k], int(rng.integers(0, SIDE - s + 1)),
                                int(rng.integers(0, SIDE - s + 1)), s, first_frame))
        boxes = [t.swept_box() for t in things]
        if all(_apart(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            statics = [t for t in things if t.first_frame == 0 and not t.direction]
            return Clip(_seed_tuple(seed), tuple(statics + [mover] + sorted(things[1 + n_static:],
                                                                             key=lambda t: t.first_frame)))


def clip_of(split: str, index: int) -> Clip:
    """Clip `index` of a split (seed (SPLIT_SEEDS[split], index))."""
    return make_clip(split_seed("moving-shapes", split, index, SPLIT_SEEDS, SPLIT_CLIPS, item="clip"))


def render(clip: Clip) -> np.ndarray:
    """[FRAMES, SIDE, SIDE, 3] uint8 RGB frames."""
    frames = np.empty((FRAMES, SIDE, SIDE, 3), np.uint8)
    frames[:] = BACKGROUND
    for t in range(FRAMES):
        for thing in clip.things:
            if t < thing.first_frame:
                continue
            x, y = thing.position(t)
            mask = _shape_mask(thing)  # uses .shape and .size only
            frames[t, y:y + thing.size, x:x + thing.size][mask] = COLORS[thing.color]
    return frames


def frames(clip: Clip) -> list:
    """The clip as RGB PIL frames."""
    from PIL import Image

    return [Image.fromarray(f, "RGB") for f in render(clip)]


def questions(clip: Clip) -> list[Question]:
    """One question of each type, in QUESTION_TYPES order."""
    return [Question("direction", "which way does the moving shape go?", clip.mover.direction),
            Question("moving_color", "what color is the moving shape?", clip.mover.color),
            Question("appears_last", "what color appears last?", clip.arrivals[-1].color)]


def question_type(text: str) -> str:
    for q in questions(make_clip(0)):
        if q.text == text:
            return q.type
    raise ValueError(f"not a moving-shapes question: {text!r}")


def answer_vocabulary() -> tuple[str, ...]:
    return (*DIRECTIONS, *COLORS)


def words() -> list[str]:
    """Every word of every question and answer, sorted."""
    import re

    texts = [q.text for q in questions(make_clip(0))] + list(answer_vocabulary())
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t.lower())})


# ---- as an evaluation dataset ----------------------------------------------------------------------------

def open_motion_vqa(split: str = "test", *, limit: int | None = None, seed: int | None = None,
                    clips: int | None = None):
    """The split as a Dataset of video samples, len(QUESTION_TYPES) questions per clip (row r: clip r // 3,
    question r % 3). `clips` shortens the split to its first n clips."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"moving-shapes: unknown split {split!r}; valid: {', '.join(SPLIT_SEEDS)}")
    n_clips = SPLIT_CLIPS[split] if clips is None else min(clips, SPLIT_CLIPS[split])
    per = len(QUESTION_TYPES)

    def make(row: int) -> Sample:
        index, k = divmod(row, per)
        clip = clip_of(split, index)
        q = questions(clip)[k]
        return Sample(id=f"moving-shapes-{split}-{row}", question=q.text, answers=[q.answer], task="exact_match",
                      load_video=lambda: Video(frames(clip), FPS),
                      meta={"dataset": "moving-shapes", "clip_id": index, "type": q.type})

    return Dataset("moving-shapes", choose_rows(n_clips * per, limit, seed).tolist(), make)


def export_jsonl(folder: str | os.PathLike, split: str = "test", clips: int | None = None) -> Path:
    """Write the split's clips as GIFs (lossless here: a few flat colours) and `<split>.jsonl` (one row per
    question, `"video": "clips/<i>.gif"`, `"fps"`); returns the JSONL path."""
    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    n = SPLIT_CLIPS[split] if clips is None else min(clips, SPLIT_CLIPS[split])
    rows = []
    for i in range(n):
        clip = clip_of(split, i)
        pictures = frames(clip)
        name = f"clips/{split}_{i}.gif"
        pictures[0].save(folder / name, save_all=True, append_images=pictures[1:], duration=int(1000 / FPS),
                         loop=0, optimize=False, disposal=1)
        for k, q in enumerate(questions(clip)):
            rows.append({"id": f"moving-shapes-{split}-{3 * i + k}", "video": name, "fps": FPS,
                         "question": q.text, "answer": q.answer, "type": q.type})
    path = folder / f"{split}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return path
