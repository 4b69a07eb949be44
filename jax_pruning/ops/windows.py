"""2-D windows over a token grid and budget apportionment across windows.

Hi-Lo's coarse stage splits the merged token grid into s x s windows and
gives each a share of k proportional to its score. Tokens carry their own
(row, col) coordinates so the same code serves any grid size padded to a
static capacity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jax_pruning.ops.selection import topk_mask


def grid_coordinates(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (row, col) int32 coordinates of an h x w grid, each of length h*w."""
    flat = np.arange(h * w, dtype=np.int32)
    return flat // w, flat % w


def window_index(row: Int[Array, "N"], col: Int[Array, "N"], window: int, n_window_cols) -> Int[Array, "N"]:
    """Window id (row // s) * n_window_cols + col // s of every token (n_window_cols = ceil(w / s))."""
    row = jnp.asarray(row, jnp.int32)
    col = jnp.asarray(col, jnp.int32)
    return (row // window) * jnp.asarray(n_window_cols, jnp.int32) + col // window


def apportion(weights: Float[Array, "S"], total, capacity: Int[Array, "S"]) -> Int[Array, "S"]:
    """Split `total` units across S bins proportionally to `weights`, capped by `capacity`.

    Largest remainders: each bin gets floor(R * w / sum w); the R - sum(floors)
    leftover units go one each to the largest fractional parts, ties to the
    lower bin index. A bin whose allocation exceeds its capacity is filled and
    closed; the excess is apportioned again over the open bins (same rule), until
    nothing is left or every bin is full. Non-finite or negative weights count
    as 0; if the open bins' weights sum to 0 they are treated as equal.
    Result sums to min(total, sum(capacity)). Float32 arithmetic throughout.
    """
    capacity = jnp.maximum(jnp.asarray(capacity, jnp.int32), 0)
    w_all = jnp.asarray(weights, jnp.float32)
    w_all = jnp.where(jnp.isfinite(w_all) & (w_all > 0), w_all, 0.0)
    n_bins = capacity.shape[0]

    def cond(state):
        share, remaining, step = state
        return (remaining > 0) & jnp.any(share < capacity) & (step <= n_bins + 1)

    def body(state):
        share, remaining, step = state
        open_bin = share < capacity
        w = jnp.where(open_bin, w_all, 0.0)
        w_sum = jnp.sum(w)
        w = jnp.where(w_sum > 0, w, open_bin.astype(jnp.float32))
        w_sum = jnp.where(w_sum > 0, w_sum, jnp.sum(w))
        quota = remaining.astype(jnp.float32) * w / w_sum
        base = jnp.floor(quota).astype(jnp.int32)
        leftover = remaining - jnp.sum(base)
        extra = topk_mask(quota - base.astype(jnp.float32), leftover, open_bin)
        alloc = base + extra.astype(jnp.int32)
        given = jnp.minimum(alloc, capacity - share)
        return share + given, remaining - jnp.sum(given), step + 1

    init = (jnp.zeros((n_bins,), jnp.int32), jnp.asarray(total, jnp.int32), jnp.int32(0))
    share, _, _ = jax.lax.while_loop(cond, body, init)
    return share
