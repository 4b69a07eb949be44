"""Streaming safetensors reader: one tensor in memory at a time.

We parse the format ourselves (8-byte little-endian header length, JSON header,
raw little-endian data) instead of `safe_open(framework="numpy")`, which cannot
return bfloat16. Each `read` allocates exactly the tensor's bytes and fills
them straight from the file, so bf16 never goes through a float64 (or any
other) intermediate copy, and nothing else of the checkpoint stays in memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype(bool),
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are: absolute file offsets [start, end)."""

    key: str
    file: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(file: Path) -> dict[str, TensorInfo]:
    """Parse and validate one file's header; catches truncated and corrupt files up front."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            raise ValueError(f"{file}: not a safetensors file (only {size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"{file}: corrupt or truncated safetensors header (header length {header_len}, file {size} bytes)")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{file}: corrupt safetensors header: {err}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{file}: corrupt safetensors header (not a JSON object)")
    data_start = 8 + header_len
    infos: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except KeyError as err:
            raise ValueError(f"{file}: tensor {key!r} has unsupported or missing header field {err}") from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != expected or begin < 0:
            raise ValueError(f"{file}: tensor {key!r} has {end - begin} bytes for shape {shape} {entry['dtype']} ({expected} needed)")
        if data_start + end > size:
            raise ValueError(
                f"{file}: truncated: tensor {key!r} ends at byte {data_start + end} but the file has {size} bytes"
            )
        infos[key] = TensorInfo(key, file, dtype, shape, data_start + begin, data_start + end)
    return infos


class SafetensorsReader:
    """All tensors of an HF folder (single file or sharded index), read lazily."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.files = self._find_files()
        self.tensors: dict[str, TensorInfo] = {}
        for file in self.files:
            for key, info in read_header(file).items():
                if key in self.tensors:
                    raise ValueError(f"tensor {key!r} appears in both {self.tensors[key].file.name} and {file.name}")
                self.tensors[key] = info
        self._check_index()

    def _find_files(self) -> list[Path]:
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                self._weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{index}: not a valid safetensors index ({err})") from None
            names = sorted(set(self._weight_map.values()))
            missing = [n for n in names if not (self.folder / n).is_file()]
            if missing:
                raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
            return [self.folder / n for n in names]
        self._weight_map = None
        if (self.folder / SINGLE_FILE).is_file():
            return [self.folder / SINGLE_FILE]
        raise FileNotFoundError(f"{self.folder}: neither {SINGLE_FILE} nor {INDEX_FILE} found")

    def _check_index(self) -> None:
        """The index and the shards' own headers must agree key for key."""
        if self._weight_map is None:
            return
        wrong = sorted(k for k, f in self._weight_map.items() if k not in self.tensors or self.tensors[k].file.name != f)
        unlisted = sorted(set(self.tensors) - set(self._weight_map))
        if wrong or unlisted:
            raise ValueError(
                f"{self.folder / INDEX_FILE} disagrees with the shard headers: "
                f"listed but not in that shard: {wrong[:20]}; in a shard but not listed: {unlisted[:20]}"
            )

    def keys(self) -> list[str]:
        """In file order, then byte order: reads sweep each file front to back."""
        return sorted(self.tensors, key=lambda k: (str(self.tensors[k].file), self.tensors[k].start))

    def __len__(self) -> int:
        return len(self.tensors)

    def read(self, key: str) -> np.ndarray:
        info = self.tensors[key]
        out = np.empty(info.shape, dtype=info.dtype)
        with open(info.file, "rb") as f:
            f.seek(info.start)
            n = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        if n != info.nbytes:  # file shrank after the header was read
            raise ValueError(f"{info.file}: truncated while reading tensor {key!r} ({n} of {info.nbytes} bytes)")
        return out

    def view(self, key: str) -> np.ndarray:
        """A read-only memory map of one tensor: slicing it reads only the slice's bytes (sharded loads)."""
        info = self.tensors[key]
        if info.file.stat().st_size < info.end:
            raise ValueError(f"{info.file}: truncated: tensor {key!r} ends at byte {info.end}")
        if not info.shape or 0 in info.shape:
            return self.read(key)
        return np.memmap(info.file, dtype=info.dtype, mode="r", offset=info.start, shape=info.shape)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for key in self.keys():
            yield key, self.read(key)
