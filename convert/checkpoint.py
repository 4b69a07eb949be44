"""Converted-checkpoint folder: Orbax params + config, written atomically.

Layout of a converted folder:

  OUT_DIR/params/             Orbax checkpoint of the nested param dict (nnx state paths)
  OUT_DIR/config.json         the HF config, copied byte for byte
  OUT_DIR/model_config.json   our parsed config (dataclasses.asdict), for reading by eye
  OUT_DIR/conversion.json     manifest: source, dtype, tensor count; written last
  OUT_DIR/<tokenizer, processor, chat template, generation config files>  copied as they are,
                              so a converted folder is as usable as the HF one it came from

Everything is written into a hidden sibling temp folder and renamed to OUT_DIR
at the very end (one `rename`, atomic on POSIX), so a crash or SIGKILL leaves
nothing at OUT_DIR, only a temp folder that the next conversion next to it
removes once its writer process is gone. With overwrite=True the new folder and
the old OUT_DIR are swapped in one step (Linux renameat2; elsewhere the old one
is first renamed aside to a hidden folder carrying the writer's pid, removed the
same way), so a kill leaves the old folder or the new one (or, without renameat2,
none): never a mix.

Params are saved with Orbax's partial save in groups of about `group_bytes`,
so the whole model is never in memory at once.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PARAMS_DIR = "params"
HF_CONFIG = "config.json"
PARSED_CONFIG = "model_config.json"
MANIFEST = "conversion.json"
FORMAT = "jaxprune-converted/1"
_TEMP_TAG = ".converting-"
_TRASH_TAG = ".old-"
# Weight files are converted, never copied; every other small side file travels along.
_NOT_COPIED = (HF_CONFIG, "model.safetensors.index.json", PARSED_CONFIG, MANIFEST)
_SIDE_FILE_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken")


def side_files(hf_dir: str | os.PathLike) -> list[Path]:
    """Tokenizer / processor / chat-template / generation-config files of an HF folder."""
    return sorted(
        f for f in Path(hf_dir).iterdir()
        if f.is_file() and f.suffix in _SIDE_FILE_SUFFIXES and f.name not in _NOT_COPIED
    )


def is_converted_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _nest(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a temp file or folder tagged with it may still be in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(out: Path) -> None:
    """Remove the temp folders (and renamed-aside old folders) that killed conversions left in `out`'s
    parent, to any name there: `.NAME.converting-PID-*` / `.NAME.old-PID-*` whose process is gone."""
    for tag in (_TEMP_TAG, _TRASH_TAG):
        for temp in out.parent.glob(f".*{tag}*"):
            try:
                pid = int(temp.name.rsplit(tag, 1)[1].split("-")[0])
            except (ValueError, IndexError):
                continue
            if temp.is_dir() and not pid_alive(pid):
                shutil.rmtree(temp, ignore_errors=True)


def save_params_streaming(params_dir: Path, tensors: Iterable[tuple[str, np.ndarray]], group_bytes: int) -> int:
    """Orbax partial saves of at most ~group_bytes each, then finalize. Returns the tensor count."""
    from orbax.checkpoint.experimental import v1 as ocp

    group: dict[str, np.ndarray] = {}
    size = count = 0
    with _saving_context():
        for path, array in tensors:
            group[path] = array
            size += array.nbytes
            count += 1
            if size >= group_bytes:
                ocp.partial.save(params_dir, _nest(group))
                group, size = {}, 0
        if group or count == 0:
            ocp.partial.save(params_dir, _nest(group))
        ocp.partial.finalize(params_dir)
    return count


def _saving_context():
    """Orbax options that keep peak memory near 2x the largest tensor.

    Measured on a 1 GiB Llama-shaped checkpoint (see tests/convert/test_memory.py):
    Orbax's defaults (defensive deep copy of host arrays + zstd) peaked at ~3.5x
    the largest tensor. Our arrays are never mutated during the (synchronous)
    save, so the copy is pure waste; and trained float weights barely compress,
    while zstd costs buffers and time on both save and load.
    """
    from orbax.checkpoint.experimental import v1 as ocp

    array_options = ocp.options.ArrayOptions(saving=ocp.options.ArrayOptions.Saving(use_compression=False))
    memory_options = ocp.options.MemoryOptions(deepcopy_host_arrays=False)
    return ocp.Context(array_options=array_options, memory_options=memory_options)


def write_converted(
    out_dir: str | os.PathLike,
    tensors: Iterable[tuple[str, np.ndarray]],
    hf_config_file: Path,
    parsed_config: dict,
    manifest: dict,
    overwrite: bool = False,
    group_bytes: int = 128 << 20,
    extra_files: Iterable[Path] = (),
) -> Path:
    """Write a converted folder atomically (see module docstring). Returns OUT_DIR."""
    out = Path(out_dir).absolute()
    if out.parent.is_dir():
        _remove_stale_temps(out)  # also when refusing below: a re-run after a kill leaves nothing stale
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists; remove it or pass overwrite=True (--overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}{_TEMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        count = save_params_streaming(temp / PARAMS_DIR, tensors, group_bytes)
        shutil.copyfile(hf_config_file, temp / HF_CONFIG)
        for file in extra_files:
            shutil.copyfile(file, temp / file.name)
        (temp / PARSED_CONFIG).write_text(json.dumps(parsed_config, indent=2, default=str))
        (temp / MANIFEST).write_text(json.dumps({"format": FORMAT, "tensors": count, **manifest}, indent=2))
        _replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _replace(temp: Path, out: Path) -> None:
    """Move the finished temp folder to `out`; an old `out` is removed only after.

    Over an old folder: swapped in one step where the OS can (a kill leaves the old folder or the new
    one at `out`, and a temp folder the next conversion removes); else renamed aside first (a kill
    between the two renames leaves nothing at `out`)."""
    if out.exists() and any(out.iterdir()):
        if _exchange(temp, out):
            shutil.rmtree(temp, ignore_errors=True)  # now the old folder, under the temp name
            return
        trash = out.parent / f".{out.name}{_TRASH_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
        os.rename(temp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(temp, out)  # over a missing or empty directory


def read_manifest(path: str | os.PathLike) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Flat {param path: numpy array} of a converted folder, dtypes as saved."""
    from orbax.checkpoint.experimental import v1 as ocp

    path = Path(path)
    if not is_converted_dir(path):
        raise ValueError(f"{path} is not a converted checkpoint folder (no {MANIFEST}; was the conversion interrupted?)")
    tree = ocp.load(path / PARAMS_DIR)
    return {k: np.asarray(v) for k, v in _flatten(tree).items()}


def read_params_sharded(path: str | os.PathLike, targets: dict) -> dict:
    """Flat {param path: jax.Array} restored straight into `targets` ({path: jax.ShapeDtypeStruct with
    a sharding}): Orbax reads each device's slice where it lives and casts to the target dtype."""
    from orbax.checkpoint.experimental import v1 as ocp

    path = Path(path)
    if not is_converted_dir(path):
        raise ValueError(f"{path} is not a converted checkpoint folder (no {MANIFEST}; was the conversion interrupted?)")
    _check_saved(path, ocp.metadata(path / PARAMS_DIR).metadata, targets)
    return _flatten(ocp.load(path / PARAMS_DIR, _nest(targets)))


def _check_saved(path: Path, metadata: dict, targets: dict) -> None:
    """Saved shapes / dtypes against the targets, before Orbax restores (it would cast an integer array to a
    float param without a word): one ValueError naming the folder and every param that does not fit."""
    from convert.pipeline import is_floating

    saved = _flatten(metadata)
    problems = [f"missing: {p}" for p in sorted(set(targets) - set(saved))]
    problems += [f"unexpected: {p}" for p in sorted(set(saved) - set(targets))]
    for p in sorted(set(saved) & set(targets)):
        got, want = saved[p], targets[p]
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"mis-shaped: {p}: got {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif is_floating(np.dtype(want.dtype)) and not is_floating(np.dtype(got.dtype)):
            problems.append(f"wrong dtype: {p}: got {np.dtype(got.dtype).name}, expected {np.dtype(want.dtype).name}")
    if problems:
        raise ValueError(f"{path}: the saved params do not fit the model (convert it again with `jaxprune convert`): "
                         + "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else ""))
