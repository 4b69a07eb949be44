"""Param trees without allocation, and loading flat {path: array} dicts into a model.

A path is the '/'-join of the nnx state path ("layers/3/self_attn/q_proj/kernel").
`abstract_model` builds the module under `nnx.eval_shape`, so planning a
conversion or loading an 8B model never allocates random weights first.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.config import ModelConfig, TextConfig


def build_model(config: ModelConfig, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    """The model a config describes: TextModel for text-only types, the full model otherwise."""
    rngs = nnx.Rngs(0) if rngs is None else rngs
    if config.is_multimodal:
        from models.multimodal import build_multimodal

        return build_multimodal(config, dtype, rngs)
    from models.decoder import TextModel

    return TextModel(config.text, dtype=dtype, rngs=rngs, model_config=config)


def abstract_model(config: ModelConfig | TextConfig, dtype=jnp.float32):
    """The model with ShapeDtypeStruct leaves (no memory allocated)."""
    if isinstance(config, TextConfig):
        from models.decoder import TextModel

        return nnx.eval_shape(lambda: TextModel(config, dtype=dtype, rngs=nnx.Rngs(0)))
    return nnx.eval_shape(lambda: build_model(config, dtype))


def _path(parts) -> str:
    return "/".join(str(p) for p in parts)


def flat_param_shapes(model_or_config) -> dict[str, tuple[int, ...]]:
    model = model_or_config if isinstance(model_or_config, nnx.Module) else abstract_model(model_or_config)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {_path(path): tuple(var.get_value().shape) for path, var in flat}


def load_flat_params(model: nnx.Module, flat: Mapping[str, np.ndarray]) -> nnx.Module:
    """Replace every param of `model` (abstract or real) by `flat`; one error lists all problems."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    entries = nnx.to_flat_state(params)
    expected = {_path(path): var for path, var in entries}
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    misshaped = [
        f"{p}: got {tuple(np.shape(flat[p]))}, expected {tuple(v.get_value().shape)}"
        for p, v in expected.items()
        if p in flat and tuple(np.shape(flat[p])) != tuple(v.get_value().shape)
    ]
    mistyped = [  # an integer / bool array where the model has a float param: never cast silently
        f"{p}: got {np.dtype(flat[p].dtype).name}, expected {np.dtype(v.get_value().dtype).name}"
        for p, v in expected.items()
        if p in flat and hasattr(flat[p], "dtype") and jnp.issubdtype(v.get_value().dtype, jnp.inexact)
        and not jnp.issubdtype(flat[p].dtype, jnp.inexact)
    ]
    if missing or unexpected or misshaped or mistyped:
        lines = [f"missing: {', '.join(missing)}" if missing else "",
                 f"unexpected: {', '.join(unexpected)}" if unexpected else "",
                 f"mis-shaped: {'; '.join(misshaped)}" if misshaped else "",
                 f"wrong dtype: {'; '.join(mistyped)}" if mistyped else ""]
        raise ValueError("params do not fit the model:\n" + "\n".join(x for x in lines if x))
    for path, var in entries:
        var.set_value(jnp.asarray(flat[_path(path)]))
    return nnx.merge(graphdef, nnx.from_flat_state(entries), rest)
