"""HF folder -> flat Flax params: plan from headers, then stream tensor by tensor.

`plan_conversion` looks only at safetensors headers, so every missing,
unexpected and mis-shaped key is reported in one error before a single byte of
weights is read. `stream_params` then yields one converted tensor at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConversionError
from convert.keymaps import keymap_for
from convert.rules import KeyMap, Transform
from convert.safetensors_io import SafetensorsReader

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype: Any) -> np.dtype:
    """'float32' | 'bfloat16' | 'float16' or a numpy / jax dtype -> numpy dtype."""
    import ml_dtypes

    try:
        resolved = np.dtype(ml_dtypes.bfloat16 if str(dtype) == "bfloat16" else dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {dtype!r}")
    return resolved


def is_floating(dtype: np.dtype) -> bool:
    """numpy's float kinds plus ml_dtypes' (bfloat16 is not an np.floating subtype)."""
    return np.issubdtype(dtype, np.floating) or dtype.kind == "V" and "float" in dtype.name


def cast_floats(flat: Mapping[str, np.ndarray], dtype: np.dtype) -> dict[str, np.ndarray]:
    """Cast floating arrays to `dtype` (no copy when already there); integer buffers keep theirs."""
    return {k: a.astype(dtype) if is_floating(a.dtype) and a.dtype != dtype else a for k, a in flat.items()}


@dataclasses.dataclass(frozen=True)
class PlannedTensor:
    key: str  # HF tensor name
    target: str  # Flax param path
    transform: Transform
    nbytes: int


def plan_conversion(
    reader: SafetensorsReader, keymap: KeyMap, expected: Mapping[str, tuple[int, ...]]
) -> list[PlannedTensor]:
    """Map every HF key and check every shape; raise ConversionError listing all problems."""
    planned: dict[str, PlannedTensor] = {}
    unexpected: list[str] = []
    mismatched: dict[str, tuple[str, tuple, tuple]] = {}
    mistyped: dict[str, tuple[str, str]] = {}
    for key in reader.keys():
        info = reader.tensors[key]
        match = keymap.match(key)
        if match is None:
            unexpected.append(f"{key} in {info.file.name} (no rule)")
            continue
        if match.target is None:  # dropped on purpose
            continue
        if match.target not in expected:
            if not match.rule.optional:
                unexpected.append(f"{key} in {info.file.name} -> {match.target} (model has no such param)")
            continue
        if match.target in planned:
            unexpected.append(f"{key} in {info.file.name} -> {match.target} (already filled from "
                              f"{planned[match.target].key})")
            continue
        try:
            shape = match.transform.out_shape(info.shape)
        except ValueError:
            shape = info.shape
        want = tuple(expected[match.target])
        if shape != want:
            mismatched[match.target] = (key, shape, want)
        if not is_floating(info.dtype):  # every param of our models is floating point
            mistyped[match.target] = (key, info.dtype.name)
        planned[match.target] = PlannedTensor(key, match.target, match.transform, info.nbytes)
    missing = [p for p in expected if p not in planned]
    if missing or unexpected or mismatched or mistyped:
        files = {info.key: info.file.name for info in reader.tensors.values()}
        raise ConversionError(str(reader.folder), missing, unexpected, mismatched, mistyped, files)
    return list(planned.values())


def stream_params(
    reader: SafetensorsReader, plan: list[PlannedTensor], dtype: np.dtype, progress: bool = False
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (param path, converted array); floating tensors are cast to `dtype`."""
    from tqdm.auto import tqdm

    total = sum(p.nbytes for p in plan)
    with tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=not progress) as bar:
        for item in plan:
            raw = reader.read(item.key)
            array = item.transform.apply(raw, dtype if is_floating(raw.dtype) else raw.dtype)
            del raw
            bar.update(item.nbytes)
            yield item.target, array


def _load_config(hf_dir: Path):
    from models.config import load_config

    return load_config(hf_dir)


def _expected_shapes(config) -> dict[str, tuple[int, ...]]:
    from models.params import flat_param_shapes

    return {k: tuple(v) for k, v in flat_param_shapes(config).items()}


def _read_model_type(hf_dir: Path) -> str:
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{hf_dir}: no config.json (is this a Hugging Face checkpoint folder?)")
    try:
        raw = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        what = f"a JSON {type(raw).__name__}" if not isinstance(raw, dict) else "an object without model_type"
        raise ValueError(f"{config_file}: expected a JSON object with a model_type, got {what}")
    return raw["model_type"]


def prepare(hf_dir: str | os.PathLike):
    """Open an HF folder and plan its conversion: (config, reader, plan)."""
    hf_dir = Path(hf_dir)
    model_type = _read_model_type(hf_dir)
    try:
        keymap = keymap_for(model_type)
    except (ValueError, TypeError) as err:  # unsupported model_type: name the file and the supported ones
        raise ValueError(f"{hf_dir / 'config.json'}: {err}") from None
    reader = SafetensorsReader(hf_dir)  # headers only: a damaged file is named before the (slower) config parse
    config = _load_config(hf_dir)
    return config, reader, plan_conversion(reader, keymap, _expected_shapes(config))


def load_hf_params(hf_dir: str | os.PathLike, dtype: Any = "float32", progress: bool = False):
    """In-memory conversion (no files written): (config, {param path: np.ndarray})."""
    config, reader, plan = prepare(hf_dir)
    return config, dict(stream_params(reader, plan, resolve_dtype(dtype), progress))


def load_hf_params_sharded(hf_dir: str | os.PathLike, dtype: Any, shardings: Mapping[str, Any]):
    """(config, {param path: jax.Array}) with each device reading only its slice of each tensor.

    `shardings` maps every param path to a `jax.sharding.Sharding` (models/sharding.py). The
    safetensors bytes are memory-mapped and the axis permutation is a view, so a device's slice
    is read straight from the file: no host ever holds a whole tensor it does not keep.
    """
    import jax

    config, reader, plan = prepare(hf_dir)
    np_dtype = resolve_dtype(dtype)
    out = {}
    for item in plan:
        view = reader.view(item.key)
        if item.transform.axes is not None:
            view = view.transpose(item.transform.axes)
        target = np_dtype if is_floating(view.dtype) else view.dtype
        out[item.target] = jax.make_array_from_callback(
            view.shape, shardings[item.target], lambda index, v=view, t=target: np.array(v[index], dtype=t))
    return config, out


def convert_checkpoint(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: Any = "float32",
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert an HF safetensors folder to a Flax/Orbax folder at `out_dir` (atomic). Returns out_dir."""
    from convert.checkpoint import side_files, write_converted

    np_dtype = resolve_dtype(dtype)
    config, reader, plan = prepare(hf_dir)
    manifest = {"source": str(Path(hf_dir).absolute()), "dtype": np_dtype.name, "model_type": config.model_type}
    parsed = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    return write_converted(
        out_dir,
        stream_params(reader, plan, np_dtype, progress),
        Path(hf_dir) / "config.json",
        parsed,
        manifest,
        overwrite=overwrite,
        extra_files=side_files(hf_dir),
    )
