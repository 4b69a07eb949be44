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
import math
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


_DAMAGED = "the file is damaged or incomplete: download or save it again"


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(file: Path, key: str, entry) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry; ValueError naming the file, the tensor and the field."""
    where = f"{file}: tensor {key!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: header entry is a JSON {type(entry).__name__}, not an object with "
                         f"dtype, shape and data_offsets; {_DAMAGED}")
    absent = [f for f in ("dtype", "shape", "data_offsets") if f not in entry]
    if absent:
        raise ValueError(f"{where}: header entry has no {', '.join(absent)}; {_DAMAGED}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise ValueError(f"{where}: unsupported dtype {code!r} (supported: {', '.join(DTYPES)}); "
                         f"save the checkpoint with one of these dtypes")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ValueError(f"{where}: shape {shape!r} is not a list of non-negative integers; {_DAMAGED}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        raise ValueError(f"{where}: data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end; {_DAMAGED}")
    dtype = DTYPES[code]
    begin, end = offsets
    needed = math.prod(shape) * dtype.itemsize
    if end - begin != needed:
        raise ValueError(f"{where}: has {end - begin} bytes for shape {tuple(shape)} {code} ({needed} needed); "
                         f"{_DAMAGED}")
    return dtype, tuple(shape), begin, end


def read_header(file: Path) -> dict[str, TensorInfo]:
    """Parse and validate one file's header; catches truncated and corrupt files up front.

    Every entry must be an object with a known dtype, a shape of non-negative integers and
    [begin, end] offsets holding exactly that many bytes inside the file; no two tensors may
    share bytes and no tensor name may appear twice. Any violation is a ValueError naming the
    file (and the tensor), never a struct / JSON / NumPy error.
    """
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            raise ValueError(f"{file}: not a safetensors file (only {size} bytes, no header); {_DAMAGED}")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"{file}: corrupt or truncated safetensors header (header length {header_len}, "
                             f"file {size} bytes); {_DAMAGED}")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as err:
        raise ValueError(f"{file}: corrupt safetensors header: {err.args[0]!r} appears twice; {_DAMAGED}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{file}: corrupt safetensors header ({err}); {_DAMAGED}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{file}: corrupt safetensors header (a JSON {type(header).__name__}, not an object); "
                         f"{_DAMAGED}")
    data_start = 8 + header_len
    infos: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype, shape, begin, end = _parse_entry(file, key, entry)
        if data_start + end > size:
            raise ValueError(f"{file}: truncated: tensor {key!r} ends at byte {data_start + end} but the file has "
                             f"{size} bytes; {_DAMAGED}")
        infos[key] = TensorInfo(key, file, dtype, shape, data_start + begin, data_start + end)
    by_start = sorted((i for i in infos.values() if i.nbytes), key=lambda i: (i.start, i.end))
    for prev, cur in zip(by_start, by_start[1:]):
        if cur.start < prev.end:
            raise ValueError(f"{file}: corrupt safetensors header: tensors {prev.key!r} and {cur.key!r} overlap "
                             f"(bytes {cur.start}..{min(prev.end, cur.end)} belong to both); {_DAMAGED}")
    return infos


def _read_weight_map(index: Path) -> dict[str, str]:
    """The {tensor name: shard file name} map of a sharded checkpoint's index; ValueError naming the index."""
    fix = "save the checkpoint again or fix the index by hand"
    try:
        raw = json.loads(index.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{index}: not a valid safetensors index ({err}); {fix}") from None
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict):
        what = "no weight_map" if isinstance(raw, dict) and "weight_map" not in raw else (
            f"weight_map is a JSON {type(weight_map).__name__}" if isinstance(raw, dict)
            else f"a JSON {type(raw).__name__}")
        raise ValueError(f"{index}: not a valid safetensors index ({what}, not an object of tensor -> shard "
                         f"file); {fix}")
    for key, name in weight_map.items():
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{index}: weight_map[{key!r}] = {name!r} is not a shard file name in "
                             f"{index.parent}; {fix}")
    return weight_map


class SafetensorsReader:
    """All tensors of an HF folder (single file or sharded index), read lazily."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.files = self._find_files()
        self.tensors: dict[str, TensorInfo] = {}
        for file in self.files:
            for key, info in read_header(file).items():
                if key in self.tensors:
                    raise ValueError(f"{self.folder}: tensor {key!r} appears in both {self.tensors[key].file.name} and "
                                     f"{file.name}; a shard is stale: download or save the checkpoint again")
                self.tensors[key] = info
        self._check_index()

    def _find_files(self) -> list[Path]:
        index = self.folder / INDEX_FILE
        if index.is_file():
            self._weight_map = _read_weight_map(index)
            names = sorted(set(self._weight_map.values()))
            missing = [n for n in names if not (self.folder / n).is_file()]
            if missing:
                raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}; download the "
                                        f"missing shards again, or fix the index's weight_map")
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
                f"listed but not in that shard: {wrong[:20]}; in a shard but not listed: {unlisted[:20]}; "
                f"the index or a shard is stale: download or save the checkpoint again"
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
