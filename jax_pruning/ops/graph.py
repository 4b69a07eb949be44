"""Token-similarity graphs shared by MR-Pruner, G-Prune and Hi-Lo.

Two adjacency flavours exist in the literature and in the method specs:
- `threshold_graph`: the MR-Pruner paper's A_ij = cos if cos >= s else 0;
- `softmax_graph`: the public MR-Pruner / G-Prune code's temperature softmax
  with a -5000 fill for non-edges and a degree counted on the softmax.
Information is propagated as vector-matrix products (`propagate`), never as
matrix powers, so n steps cost n * N^2 instead of log(n) * N^3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

NON_EDGE_LOGIT = -5000.0  # the official code's fill for |a| < 1e-6 (kept for parity)
_HIGHEST = jax.lax.Precision.HIGHEST


def l2_norm(x: Float[Array, "N d"]) -> Float[Array, "N"]:
    """Informativeness I_i = ||x_i||_2 in float32."""
    x = jnp.asarray(x, jnp.float32)
    return jnp.sqrt(jnp.sum(x * x, axis=-1))


def normalize_rows(x: Float[Array, "N d"]) -> Float[Array, "N d"]:
    """Unit rows in float32; zero rows stay zero (so their cosine is 0, never NaN)."""
    x = jnp.asarray(x, jnp.float32)
    norm = l2_norm(x)[:, None]
    return x / jnp.where(norm > 0, norm, 1.0)


def cosine_similarity(a: Float[Array, "N d"], b: Float[Array, "M d"]) -> Float[Array, "N M"]:
    """Cosine similarity matrix in float32 (HIGHEST matmul precision); zero-norm rows give 0."""
    return jnp.matmul(normalize_rows(a), normalize_rows(b).T, precision=_HIGHEST)


def threshold_graph(sim: Float[Array, "N M"], threshold: float) -> Float[Array, "N M"]:
    """MR-Pruner paper adjacency: sim where sim >= threshold, else 0."""
    return jnp.where(sim >= threshold, sim, jnp.zeros((), sim.dtype))


def softmax_graph(
    sim: Float[Array, "N M"],
    threshold: float,
    temperature: float,
    col_valid: Bool[Array, "M"] | None = None,
) -> tuple[Float[Array, "N M"], Float[Array, "N"]]:
    """Official MR-Pruner / G-Prune adjacency and row degree.

    a = sim; a[a < thr] = 0; a /= T; a[|a| < 1e-6] = -5000; A = row softmax;
    degree_i = #{j : A_ij > 0} (a row without neighbours becomes uniform over
    the valid columns and its degree is their count). Invalid columns get
    exactly 0 weight and are not counted; a row with no valid column is all
    zeros with degree 0.
    """
    sim = jnp.asarray(sim, jnp.float32)
    a = jnp.where(sim < threshold, 0.0, sim) / temperature
    a = jnp.where(jnp.abs(a) < 1e-6, NON_EDGE_LOGIT, a)
    if col_valid is None:
        col_valid = jnp.ones((sim.shape[1],), jnp.bool_)
    col_valid = jnp.broadcast_to(col_valid[None, :], a.shape)
    row_max = jnp.max(jnp.where(col_valid, a, -jnp.inf), axis=1, keepdims=True, initial=-jnp.inf)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    e = jnp.where(col_valid, jnp.exp(a - row_max), 0.0)
    total = jnp.sum(e, axis=1, keepdims=True)
    adjacency = e / jnp.where(total > 0, total, 1.0)
    degree = jnp.sum(adjacency > 0, axis=1).astype(jnp.float32)
    return adjacency, degree


def propagate(weights: Float[Array, "N"], adjacency: Float[Array, "N M"]) -> Float[Array, "M"]:
    """One propagation step: the row vector weights @ A (HIGHEST precision)."""
    return jnp.matmul(jnp.asarray(weights, jnp.float32), adjacency, precision=_HIGHEST)


def safe_divide(num: Float[Array, "N"], den: Float[Array, "N"]) -> Float[Array, "N"]:
    """num / den with 0 where den == 0 (degree 0 only happens for rows with no valid column)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _column_blocks(values: Array, block: int, fill) -> Array:
    """Pad axis 0 to a multiple of `block` with `fill` and split it: [N, ...] -> [N/block, block, ...]."""
    n = values.shape[0]
    n_blocks = max(1, -(-n // block))
    pad = n_blocks * block - n
    padded = jnp.concatenate([values, jnp.full((pad,) + values.shape[1:], fill, values.dtype)]) if pad else values
    return padded.reshape((n_blocks, block) + values.shape[1:])


def threshold_graph_scores(
    x: Float[Array, "N d"],
    weights: Float[Array, "N"],
    threshold: float,
    *,
    group: Array | None = None,
    block: int = 1024,
) -> Float[Array, "N"]:
    """S_i = sum_j A_ij w_j with A = threshold_graph(cos(x, x)), only over j in i's group.

    Why: Hi-Lo's fine graph (A within each window) and its global variant
    need S = A I, not A; scanning over column blocks keeps memory at
    N x block instead of N x N. `group` (int [N]) restricts edges to equal ids.
    """
    unit = normalize_rows(x)
    group = jnp.zeros((x.shape[0],), jnp.int32) if group is None else jnp.asarray(group, jnp.int32)
    blocks = (_column_blocks(unit, block, 0.0), _column_blocks(jnp.asarray(weights, jnp.float32), block, 0.0),
              _column_blocks(group, block, -1))

    def step(total, blk):
        unit_b, weight_b, group_b = blk
        sim = jnp.matmul(unit, unit_b.T, precision=_HIGHEST)  # [N, block]
        adjacency = threshold_graph(sim, threshold) * (group[:, None] == group_b[None, :])
        return total + jnp.matmul(adjacency, weight_b, precision=_HIGHEST), None

    total, _ = jax.lax.scan(step, jnp.zeros((x.shape[0],), jnp.float32), blocks)
    return total


def max_similarity(x: Float[Array, "N d"], columns: Bool[Array, "N"], *, block: int = 1024) -> Float[Array, "N"]:
    """max_{j : columns_j} cos(x_i, x_j) per token, -1 when no column is selected (memory N x block)."""
    unit = normalize_rows(x)
    blocks = (_column_blocks(unit, block, 0.0), _column_blocks(columns, block, False))

    def step(best, blk):
        unit_b, col_b = blk
        sim = jnp.matmul(unit, unit_b.T, precision=_HIGHEST)
        return jnp.maximum(best, jnp.max(jnp.where(col_b[None, :], sim, -1.0), axis=1, initial=-1.0)), None

    best, _ = jax.lax.scan(step, jnp.full((x.shape[0],), -1.0, jnp.float32), blocks)
    return best
