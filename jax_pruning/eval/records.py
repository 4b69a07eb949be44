"""Crash-safe files of an evaluation run: the predictions JSONL and atomic summaries.

predictions.jsonl gets one JSON object per finished sample, appended and
fsynced batch by batch, so a crash loses at most the batch in flight. A crash
mid-write can leave a truncated last line: `read_records(..., repair=True)`
drops it (cutting the file back to the last complete line) so the resumed run
appends cleanly after it. Summaries are written to a temporary file in the same
folder and moved into place with os.replace: a reader sees the old file or the
new one, never half of one (plots go the same way).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable

import numpy as np

from convert.checkpoint import pid_alive


def _jsonable(value):
    """json.dumps fallback for NumPy/JAX scalars and arrays the engine hands back."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json_line(record: dict) -> str:
    return json.dumps(record, default=_jsonable, ensure_ascii=False) + "\n"


def read_records(path: str | os.PathLike, *, repair: bool = False) -> list[dict]:
    """All complete records in a predictions file ([] when it does not exist).

    A last line without its newline, or one that does not parse, is what a crash
    mid-write leaves: it is ignored (and cut off the file when `repair`). A bad
    line anywhere else means the file is not ours or was edited: ValueError.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end, start = [], 0, 0
    while start < len(data):
        end = data.find(b"\n", start)
        line = data[start:] if end < 0 else data[start:end]
        is_last = end < 0 or end == len(data) - 1
        try:
            record = json.loads(line) if line.strip() else None
            complete = end >= 0
        except json.JSONDecodeError:
            if not is_last:
                raise ValueError(f"{path}: line {len(records) + 1} is not JSON (not a predictions file?)") from None
            record, complete = None, False
        if not complete:
            break
        if record is not None:
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError(f"{path}: line {len(records) + 1} is not a prediction record (no 'id')")
            records.append(record)
        good_end = end + 1
        start = end + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def append_records(fh: IO[str], records: Iterable[dict]) -> None:
    """Append records as JSON lines and make them durable before returning."""
    fh.write("".join(to_json_line(r) for r in records))
    fh.flush()
    os.fsync(fh.fileno())


def _remove_stale_temps(path: Path) -> None:
    """Temp files of `path` (".NAME.PID-*.tmp") that a killed writer left behind."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(temp.name[len(path.name) + 2:].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            temp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` (text, or bytes such as a PNG) to `path` through a temp file in the same folder +
    os.replace: a reader, or a run killed at any point, sees the old file or the new one, never half of
    one. A temp file a killed writer left behind is removed by the next write of the same path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w",
                       **({} if isinstance(content, bytes) else {"encoding": "utf-8"})) as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
