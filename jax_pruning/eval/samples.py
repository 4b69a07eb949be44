"""One evaluation sample and a dataset as an indexable list of them.

A sample shows the model one image or one video (a list of frames). Both load
lazily (a dataset of thousands of images must not sit decoded in memory) and a
broken one raises `SampleError` with the reason, so the runner can record that
sample as failed and go on.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image


class SampleError(Exception):
    """A sample that cannot be evaluated (its image does not load, its prompt is too long, ...)."""


class Clip(NamedTuple):
    """A decoded video: its frames in order and their rate (what Qwen2.5-VL / Qwen3-VL's temporal M-RoPE
    positions are computed from)."""

    frames: list[Image.Image]
    fps: float


@dataclasses.dataclass(frozen=True)
class Sample:
    """A question about one image or one video. `image` / `video` decode on access (RGB); failures raise
    SampleError. A video sample has `load_video` instead of `load_image` (-> a Clip)."""

    id: str
    question: str
    answers: list[str]
    task: str
    load_image: Callable[[], Image.Image] | None = dataclasses.field(default=None, repr=False, compare=False)
    choices: list[str] | None = None
    meta: dict = dataclasses.field(default_factory=dict, compare=False)
    load_video: Callable[[], Clip] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_video(self) -> bool:
        return self.load_video is not None

    @property
    def video(self) -> Clip:
        """The frames (RGB, all one size) and their rate; SampleError if they do not load or it is an image."""
        if self.load_video is None:
            raise SampleError(f"sample {self.id!r} is an image, not a video")
        try:
            frames, fps = self.load_video()
            for frame in frames:
                frame.load()
        except SampleError:
            raise
        except Exception as err:  # noqa: BLE001 — PIL raises many types
            raise SampleError(f"sample {self.id!r}: video does not load ({type(err).__name__}: {err})") from None
        if not frames:
            raise SampleError(f"sample {self.id!r}: the video has no frames")
        sizes = {f.size for f in frames}
        if len(sizes) > 1:
            raise SampleError(f"sample {self.id!r}: the video's frames differ in size ({sorted(sizes)})")
        if not (isinstance(fps, (int, float)) and fps > 0 and np.isfinite(fps)):
            raise SampleError(f"sample {self.id!r}: the video's frame rate must be a positive number, got {fps!r}")
        return Clip([f.convert("RGB") for f in frames], float(fps))

    @property
    def preview(self) -> Image.Image:
        """What a report shows: the image, or a video's first frame."""
        return self.video.frames[0] if self.is_video else self.image

    @property
    def image(self) -> Image.Image:
        if self.load_image is None:
            raise SampleError(f"sample {self.id!r} has no image" + (" (it is a video)" if self.is_video else ""))
        try:
            image = self.load_image()
            image.load()
        except SampleError:
            raise
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...)
            raise SampleError(f"sample {self.id!r}: image does not load ({type(err).__name__}: {err})") from None
        return image.convert("RGB")


def image_from_file(path: str | os.PathLike) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        if not os.path.isfile(path):
            raise SampleError(f"image file {str(path)!r} does not exist")
        return Image.open(path)

    return load


def image_from_bytes(data: bytes | None, where: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        if not data:
            raise SampleError(f"{where}: no image bytes")
        return Image.open(io.BytesIO(data))

    return load


def choose_rows(n: int, limit: int | None, seed: int | None) -> np.ndarray:
    """Row indices to evaluate: all, the first `limit`, or (with a seed) a random `limit` in file order.

    Kept in file order so parquet row groups are read front to back once.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    take = n if limit is None else min(limit, n)
    if seed is None:
        return np.arange(take)
    return np.sort(np.random.default_rng(seed).choice(n, size=take, replace=False))


class Dataset(Sequence[Sample]):
    """A named, indexable list of samples (built lazily from a row -> Sample function)."""

    def __init__(self, name: str, rows: Sequence[int], make: Callable[[int], Sample]):
        self.name = name
        self._rows = list(rows)
        self._make = make

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._make(self._rows[i])

    def __iter__(self) -> Iterator[Sample]:
        for row in self._rows:
            yield self._make(row)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} samples)"
