"""Videos for evaluation rows: a folder of frames, or an animated image file, decoded with Pillow.

Why Pillow and not PyAV / imageio: Pillow is already what every image goes
through, it reads frame folders (PNG / JPEG / WebP ...), GIF, animated WebP and
APNG exactly (lossless formats give back the pixels that were written), and it
adds no 35 MB FFmpeg wheel to every install. Compressed containers (.mp4, .mkv,
.mov, .avi, .webm) are refused with the one-line ffmpeg command that turns them
into a frame folder, so a run never depends on which codecs a wheel happens to
ship.

A folder's frames are its image files in natural name order (frame_2 before
frame_10); anything else in the folder is ignored. `fps` is the rate of the
frames as stored; `max_frames` keeps that many frames spread evenly over the
video (first and last kept), the way video benchmarks sample a clip, and the
rate handed to the model drops with it (same duration, fewer frames).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageSequence

from jax_pruning.eval.samples import Clip, SampleError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff")
ANIMATED_SUFFIXES = (".gif", ".webp", ".png", ".apng")
CONTAINER_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The folder's image files in natural name order."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def spread(count: int, keep: int | None) -> np.ndarray:
    """Indices of `keep` frames spread evenly over `count` (all when keep is None or >= count)."""
    if keep is None or keep >= count:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(int))


def read_video(path: str | os.PathLike, fps: float = 2.0, max_frames: int | None = None) -> Clip:
    """The frames of a frame folder or an animated image file (decoded, in order) and their rate after
    sampling; SampleError otherwise."""
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise SampleError(f"video folder {str(path)!r} holds no image files ({', '.join(FRAME_SUFFIXES)})")
        frames, kept = [], spread(len(files), max_frames)
        for f in (files[i] for i in kept):
            try:
                with Image.open(f) as image:
                    image.load()
                    frames.append(image.copy())
            except (OSError, ValueError, SyntaxError) as err:
                raise SampleError(f"video frame {str(f)!r} cannot be decoded: {err}") from None
        return Clip(frames, fps * len(kept) / len(files))
    if not path.exists():
        raise SampleError(f"video {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in CONTAINER_SUFFIXES:
        raise SampleError(f"video {str(path)!r}: {suffix} files are not decoded here; turn it into a folder of "
                          f"frames first, e.g. `ffmpeg -i {path.name} -vf fps=2 {path.stem}/%05d.png`, and point "
                          f"the row at that folder")
    if suffix not in ANIMATED_SUFFIXES:
        raise SampleError(f"video {str(path)!r}: not a frame folder or an animated image "
                          f"({', '.join(ANIMATED_SUFFIXES)})")
    try:
        with Image.open(path) as image:
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise SampleError(f"video {str(path)!r} cannot be decoded: {err}") from None
    if not frames:
        raise SampleError(f"video {str(path)!r} has no frames")
    kept = spread(len(frames), max_frames)
    return Clip([frames[i] for i in kept], fps * len(kept) / len(frames))


def video_from_path(path: str | os.PathLike, fps: float = 2.0, max_frames: int | None = None) -> Callable[[], Clip]:
    """A lazy loader for `Sample.load_video`."""
    return lambda: read_video(path, fps, max_frames)
