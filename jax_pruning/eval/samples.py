"""One evaluation sample and a dataset as an indexable list of them.

Images load lazily (a dataset of thousands of images must not sit decoded in
memory) and a broken image raises `SampleError` with the reason, so the runner
can record that sample as failed and go on.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image


class SampleError(Exception):
    """A sample that cannot be evaluated (its image does not load, its prompt is too long, ...)."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """A question about one image. `image` decodes on access (RGB); failures raise SampleError."""

    id: str
    question: str
    answers: list[str]
    task: str
    load_image: Callable[[], Image.Image] = dataclasses.field(repr=False, compare=False)
    choices: list[str] | None = None
    meta: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def image(self) -> Image.Image:
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
