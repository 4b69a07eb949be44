"""`models.load`: an HF checkpoint folder or a converted folder -> a Flax model.

No network, no temp files: an HF folder is converted in memory by the same
streaming path `python -m convert` uses (same key maps, same checks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def load(path: str | os.PathLike, dtype: Any = None, *, mesh=None, fsdp: bool = False):
    """Load a model from `path`; returns the model (its parsed config is `model.config`).

    path: a folder written by `convert` (has conversion.json) or a Hugging Face
      folder (config.json + model.safetensors or a sharded index).
    dtype: None keeps a converted folder's saved dtype and loads an HF folder in
      float32 (the parity reference); "float32" / "bfloat16" (or a numpy / jax
      dtype) casts every floating param.
    mesh: a `jax_pruning.parallel.make_mesh(...)` mesh: every param is placed by its PartitionSpec
      (models/sharding.py: tensor parallel on "model"; fsdp=True also splits over "data") and each
      device reads only its own slice (Orbax restore with target shardings, or safetensors slices).
    """
    from convert.checkpoint import read_manifest, read_params
    from convert.pipeline import cast_floats, load_hf_params, resolve_dtype
    from models.config import load_config
    from models.params import abstract_model

    path = Path(path)
    converted = _is_converted(path)
    if mesh is not None:
        return _load_sharded(path, converted, dtype, mesh, fsdp)
    if converted:
        config = load_config(path)
        flat = read_params(path)
        np_dtype = resolve_dtype(dtype if dtype is not None else read_manifest(path)["dtype"])
    else:
        np_dtype = resolve_dtype(dtype if dtype is not None else "float32")
        config, flat = load_hf_params(path, np_dtype)
    model = abstract_model(config, np_dtype)
    return _fit(model, cast_floats(flat, np_dtype), path, converted)


def _fit(model, flat, path: Path, converted: bool):
    """load_flat_params, with an error naming the folder (the params in it do not fit its config)."""
    from models.params import load_flat_params

    try:
        return load_flat_params(model, flat)
    except ValueError as err:
        fix = "convert it again with `jaxprune convert`" if converted else "check its config.json and weights"
        raise ValueError(f"models.load: {path}: {err}\n({fix})") from None


def _is_converted(path: Path) -> bool:
    """True for a `convert` output, False for an HF folder; errors name what the folder lacks."""
    from convert.checkpoint import is_converted_dir

    if not path.is_dir():
        raise FileNotFoundError(f"models.load: {path} is not a folder")
    if is_converted_dir(path):
        return True
    if (path / "config.json").is_file():
        return False
    raise ValueError(f"models.load: {path} is neither a converted folder (conversion.json) nor a Hugging Face "
                     f"checkpoint folder (config.json + *.safetensors)")


def _load_sharded(path: Path, converted: bool, dtype: Any, mesh, fsdp: bool):
    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from convert.checkpoint import read_manifest, read_params_sharded
    from convert.pipeline import load_hf_params_sharded, resolve_dtype
    from models.config import load_config
    from models.params import abstract_model, flat_param_shapes
    from models.sharding import default_rules, param_shardings

    config = load_config(path)
    saved = read_manifest(path)["dtype"] if converted else "float32"
    np_dtype = resolve_dtype(dtype if dtype is not None else saved)
    model = abstract_model(config, np_dtype)
    shapes = flat_param_shapes(model)
    shardings = param_shardings(shapes, mesh, default_rules(config, fsdp))
    if converted:
        dtypes = {p: v.get_value().dtype for p, v in
                  ((("/".join(map(str, k))), v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))}
        targets = {p: jax.ShapeDtypeStruct(shape, dtypes[p], sharding=shardings[p]) for p, shape in shapes.items()}
        flat = read_params_sharded(path, targets)
    else:
        _, flat = load_hf_params_sharded(path, np_dtype, shardings)
    model = _fit(model, flat, path, converted)
    # anything that is not a param (none today) goes everywhere, so jit sees one device set
    whole = NamedSharding(mesh, PartitionSpec())
    rest = nnx.state(model, nnx.Not(nnx.Param))
    nnx.update(model, jax.tree.map(lambda x: jax.device_put(x, whole) if isinstance(x, (jax.Array, np.ndarray))
                                   else x, rest))
    return model
