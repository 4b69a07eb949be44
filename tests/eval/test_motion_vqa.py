"""moving-shapes generator: seeded determinism, every answer recomputed from the rendered frames alone,
and the GIF + JSONL export read back through `open_dataset("jsonl", ...)`."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from jax_pruning.eval import motion_vqa as mv
from jax_pruning.eval.datasets import DATASETS, open_dataset

N_CLIPS = 200
RGB = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
       "purple": (150, 60, 190)}  # written out again: the check does not read the generator's table


def answers_from_pixels(frames: np.ndarray) -> dict[str, str]:
    """The three answers read off the frames: each colour's first frame and its centroid per frame."""
    first, centroids = {}, {}
    for name, rgb in RGB.items():
        masks = (frames == rgb).all(-1)  # [T, H, W]
        present = [t for t in range(len(frames)) if masks[t].any()]
        if not present:
            continue
        first[name] = present[0]
        centroids[name] = [np.argwhere(masks[t]).mean(0) for t in present]
    moving = [c for c, cs in centroids.items() if np.abs(cs[-1] - cs[0]).max() > 5]
    assert len(moving) == 1, moving
    (dy, dx) = centroids[moving[0]][-1] - centroids[moving[0]][0]
    direction = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
    latest = max(first.values())
    last = [c for c, f in first.items() if f == latest]
    assert len(last) == 1 and latest > 0
    return {"direction": direction, "moving_color": moving[0], "appears_last": last[0]}


@pytest.fixture(scope="module")
def clips():
    return [mv.make_clip((99, i)) for i in range(N_CLIPS)]


def test_same_seed_same_frames_and_questions():
    for seed in [(0, 0), (10, 3), 5]:
        a, b = mv.make_clip(seed), mv.make_clip(seed)
        assert a == b and a.to_dict() == b.to_dict()
        assert mv.render(a).tobytes() == mv.render(b).tobytes() and mv.questions(a) == mv.questions(b)
    assert mv.make_clip((0, 0)) != mv.make_clip((0, 1))
    assert mv.clip_of("train", 7) == mv.make_clip((mv.SPLIT_SEEDS["train"], 7))


def test_answers_agree_with_the_pixels(clips):
    """A second computation from the rendered frames alone gives every answer (and each object stays whole:
    no overlap, nothing leaves the frame)."""
    for clip in clips:
        frames = mv.render(clip)
        assert frames.shape == (mv.FRAMES, mv.SIDE, mv.SIDE, 3) and frames.dtype == np.uint8
        got = answers_from_pixels(frames)
        for q in mv.questions(clip):
            assert got[q.type] == q.answer, (clip.seed, q)
        for thing in clip.things:
            x0, y0, x1, y1 = thing.swept_box()
            assert 0 <= x0 and 0 <= y0 and x1 <= mv.SIDE and y1 <= mv.SIDE
            area = int(mv._shape_mask(thing).sum())
            assert int((frames[-1] == RGB[thing.color]).all(-1).sum()) == area  # not covered by another


def test_answer_spread_and_arrival_frames(clips):
    counts = {t: collections.Counter() for t in mv.QUESTION_TYPES}
    for clip in clips:
        for q in mv.questions(clip):
            counts[q.type][q.answer] += 1
        arrivals = clip.arrivals
        assert len(arrivals) == 2 and arrivals[0].first_frame < arrivals[1].first_frame
        assert {a.first_frame for a in arrivals} <= set(mv.ARRIVAL_FRAMES)
        assert len({t.color for t in clip.things}) == len(clip.things)  # colours name objects
    assert set(counts["direction"]) == set(mv.DIRECTIONS) and min(counts["direction"].values()) > N_CLIPS // 8
    assert set(counts["moving_color"]) == set(RGB) and set(counts["appears_last"]) == set(RGB)
    assert set(mv.words()) >= {"which", "moving", "left", "purple"}


def test_dataset_and_export_round_trip(tmp_path):
    assert "moving-shapes" in DATASETS
    data = open_dataset("moving-shapes", split="test")
    assert len(data) == 3 * mv.SPLIT_CLIPS["test"]
    sample = data[4]
    assert sample.is_video and sample.meta["type"] == "moving_color" and sample.meta["clip_id"] == 1
    clip = sample.video
    assert len(clip.frames) == mv.FRAMES and clip.fps == mv.FPS
    np.testing.assert_array_equal(np.stack([np.asarray(f) for f in clip.frames]), mv.render(mv.clip_of("test", 1)))
    path = mv.export_jsonl(tmp_path, "test", clips=3)
    exported = open_dataset("jsonl", str(path))
    assert [s.id for s in exported] == [s.id for s in data[:9]]
    for got, want in zip(exported, data[:9]):
        assert (got.question, got.answers) == (want.question, want.answers)
        a, b = got.video, want.video
        assert a.fps == b.fps
        np.testing.assert_array_equal(np.stack([np.asarray(f) for f in a.frames]),
                                      np.stack([np.asarray(f) for f in b.frames]))  # GIF: lossless here
    with pytest.raises(ValueError, match="unknown split"):
        open_dataset("moving-shapes", split="val")
