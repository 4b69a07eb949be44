"""`models.load`: an HF checkpoint folder or a converted folder -> a Flax model.

No network, no temp files: an HF folder is converted in memory by the same
streaming path `python -m convert` uses (same key maps, same checks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def load(path: str | os.PathLike, dtype: Any = None):
    """Load a model from `path`; returns the model (its parsed config is `model.config`).

    path: a folder written by `convert` (has conversion.json) or a Hugging Face
      folder (config.json + model.safetensors or a sharded index).
    dtype: None keeps a converted folder's saved dtype and loads an HF folder in
      float32 (the parity reference); "float32" / "bfloat16" (or a numpy / jax
      dtype) casts every floating param.
    """
    from convert.checkpoint import is_converted_dir, read_manifest, read_params
    from convert.pipeline import cast_floats, load_hf_params, resolve_dtype
    from models.config import load_config
    from models.params import abstract_model, load_flat_params

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"models.load: {path} is not a folder")
    if is_converted_dir(path):
        config = load_config(path)
        flat = read_params(path)
        np_dtype = resolve_dtype(dtype if dtype is not None else read_manifest(path)["dtype"])
    elif (path / "config.json").is_file():
        np_dtype = resolve_dtype(dtype if dtype is not None else "float32")
        config, flat = load_hf_params(path, np_dtype)
    else:
        raise ValueError(
            f"models.load: {path} is neither a converted folder (conversion.json) nor a Hugging Face "
            f"checkpoint folder (config.json + *.safetensors)"
        )
    model = abstract_model(config, np_dtype)
    return load_flat_params(model, cast_floats(flat, np_dtype))
