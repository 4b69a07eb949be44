"""Eager input validation shared by every pruning method.

Why: a pruning function fed a wrong shape or a NaN would otherwise return a
plausible-looking but meaningless mask. When the inputs are concrete arrays
(eager call) these helpers raise a ValueError naming the argument and the
function. Inside `jax.jit` / `jax.vmap` the values are tracers: only static
facts (rank, dtype, shape) are checked; value checks (finite, ranges of a
traced count) are skipped, and each method documents what it does then.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x) -> bool:
    """True when `x` is a JAX tracer (inside jit, vmap, grad, ...)."""
    return isinstance(x, jax.core.Tracer)


def _shape_of(x) -> tuple:
    return tuple(np.shape(x))


def check_array(x, name: str, where: str, *, rank: int, kind: str = "float"):
    """Check rank and dtype kind ("float", "bool" or "int") of an array argument."""
    if not (hasattr(x, "dtype") and hasattr(x, "shape")):
        raise ValueError(f"{where}: `{name}` must be an array, got {type(x).__name__}")
    dtype = x.dtype
    shape = _shape_of(x)
    if len(shape) != rank:
        raise ValueError(f"{where}: `{name}` must have rank {rank}, got shape {shape}")
    ok = {
        "float": jnp.issubdtype(dtype, jnp.floating),
        "bool": dtype == jnp.bool_,
        "int": jnp.issubdtype(dtype, jnp.integer),
    }[kind]
    if not ok:
        wanted = {"float": "a floating", "bool": "a bool", "int": "an integer"}[kind]
        raise ValueError(f"{where}: `{name}` must have {wanted} dtype, got {dtype}")


def check_finite(x, name: str, where: str):
    """Raise on NaN/inf in a concrete float array; no-op on tracers (documented per method)."""
    if is_traced(x):
        return
    bad = ~np.asarray(jnp.isfinite(x))
    if bad.any():
        where_bad = np.argwhere(bad)[0].tolist()
        raise ValueError(
            f"{where}: `{name}` contains {int(bad.sum())} non-finite value(s) "
            f"(NaN/inf), first at index {where_bad}"
        )


def check_mask(mask, name: str, where: str, length: int):
    """`mask` is None or a bool vector of the given length."""
    if mask is None:
        return
    check_array(mask, name, where, rank=1, kind="bool")
    if _shape_of(mask)[0] != length:
        raise ValueError(f"{where}: `{name}` must have length {length}, got {_shape_of(mask)[0]}")


def check_count(k, name: str, where: str, *, upper: int | None = None):
    """A token count: a Python/NumPy int >= 0, or an integer scalar (possibly traced).

    Counts above `upper` are allowed (they clip to the number of valid tokens);
    `upper` is only used in the message of a negative count. Traced counts are
    only checked for dtype and rank.
    """
    if isinstance(k, bool):
        raise ValueError(f"{where}: `{name}` must be an integer count, got bool {k}")
    if isinstance(k, numbers.Integral):
        if k < 0:
            raise ValueError(f"{where}: `{name}` must be >= 0, got {k}")
        return
    if isinstance(k, numbers.Number):
        raise ValueError(f"{where}: `{name}` must be an integer count, got {type(k).__name__} {k!r}")
    if not hasattr(k, "dtype") or _shape_of(k) != () or not jnp.issubdtype(k.dtype, jnp.integer):
        raise ValueError(
            f"{where}: `{name}` must be an int or an integer scalar array, "
            f"got {type(k).__name__} with shape {_shape_of(k)}"
        )
    if not is_traced(k) and int(k) < 0:
        raise ValueError(f"{where}: `{name}` must be >= 0, got {int(k)}")


def check_same_width(a, b, name_a: str, name_b: str, where: str):
    """Two token matrices must share the feature dimension."""
    if _shape_of(a)[-1] != _shape_of(b)[-1]:
        raise ValueError(
            f"{where}: `{name_a}` and `{name_b}` must have the same feature size, "
            f"got {_shape_of(a)} and {_shape_of(b)}"
        )


def check_cls_attention(cls_attention, n: int, tokens_name: str, where: str):
    """A [H >= 1, n] attention row per head over the n tokens of `tokens_name`."""
    check_array(cls_attention, "cls_attention", where, rank=2, kind="float")
    if cls_attention.shape[1] != n:
        raise ValueError(f"{where}: `cls_attention` must have {n} columns (one per token of `{tokens_name}`), "
                         f"got shape {tuple(cls_attention.shape)}")
    if cls_attention.shape[0] < 1:
        raise ValueError(f"{where}: `cls_attention` must have at least one head, got shape "
                         f"{tuple(cls_attention.shape)}")


def check_real(value, name: str, where: str, *, low=None, high=None, low_open=False):
    """A static float option (threshold, temperature, ...) inside a range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if is_traced(value):
            return
        raise ValueError(f"{where}: `{name}` must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{where}: `{name}` must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{where}: `{name}` must be {op} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{where}: `{name}` must be <= {high}, got {value}")
