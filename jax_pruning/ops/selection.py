"""Top-k keep masks and gathering of kept tokens, with static shapes.

Every method ends in "keep the k best valid tokens"; doing it in one place
fixes the tie rule (lower index wins), the treatment of padding (never kept)
and of NaN (ranks as -inf) for all of them. `k` may be a Python int or a
traced integer scalar (a data-dependent budget, e.g. MR-Pruner's K^L): the
mask shape never depends on it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def _sort_key(scores: Float[Array, "N"]) -> Float[Array, "N"]:
    """Ascending sort key for "highest score first": -score, NaN -> +inf, -0.0 -> 0.0."""
    s = jnp.asarray(scores, jnp.float32)
    key = -jnp.where(jnp.isnan(s), -jnp.inf, s)
    return jnp.where(key == 0, jnp.float32(0), key)  # so that 0.0 and -0.0 tie


def rank_order(
    scores: Float[Array, "N"], valid: Bool[Array, "N"] | None = None
) -> Int[Array, "N"]:
    """Token indices best first: valid before invalid, higher score first, lower index on ties."""
    n = scores.shape[0]
    invalid = jnp.zeros((n,), jnp.int32) if valid is None else (~valid).astype(jnp.int32)
    index = jnp.arange(n, dtype=jnp.int32)
    _, _, order = jax.lax.sort((invalid, _sort_key(scores), index), num_keys=3)
    return order


def topk_mask(
    scores: Float[Array, "N"], k, valid: Bool[Array, "N"] | None = None
) -> Bool[Array, "N"]:
    """Keep mask with exactly min(k, n_valid) True, at the highest-scoring valid positions.

    Ties go to the lower index; NaN scores rank as -inf (lowest, but still
    valid and still counted); k <= 0 keeps nothing. `k` is a Python int or an
    integer scalar (traced is fine).
    """
    n = scores.shape[0]
    order = rank_order(scores, valid)
    in_budget = jnp.arange(n, dtype=jnp.int32) < jnp.asarray(k, jnp.int32)
    keep = jnp.zeros((n,), jnp.bool_).at[order].set(in_budget)
    return keep if valid is None else keep & valid


def gather_kept(x: Array, keep: Bool[Array, "N"], k: int):
    """Pack kept rows of x [N, ...] into k static slots, in original order.

    Returns (kept [k, ...], index int32[k], slot_valid bool[k]). Unused slots
    hold index 0, zeros in `kept` and slot_valid False; if `keep` has more
    than k True only the first k (lowest indices) are packed.
    """
    count = jnp.sum(keep.astype(jnp.int32))
    (index,) = jnp.nonzero(keep, size=k, fill_value=0)
    index = index.astype(jnp.int32)
    slot_valid = jnp.arange(k, dtype=jnp.int32) < count
    kept = jnp.take(x, index, axis=0)
    mask = slot_valid.reshape((k,) + (1,) * (kept.ndim - 1))
    kept = jnp.where(mask, kept, jnp.zeros((), kept.dtype))
    return kept, index, slot_valid


def segment_topk_mask(
    scores: Float[Array, "N"],
    segment: Int[Array, "N"],
    share: Int[Array, "S"],
    valid: Bool[Array, "N"] | None = None,
) -> Bool[Array, "N"]:
    """Within each segment s keep its `share[s]` best valid tokens (ties to the lower index).

    Why: Hi-Lo's fine stage keeps a per-window budget; a single sort by
    (segment, -score, index) ranks tokens inside every window at once.
    `segment` values must lie in [0, S); a share above a segment's valid count
    keeps the whole segment.
    """
    n = scores.shape[0]
    num_segments = share.shape[0]
    valid = jnp.ones((n,), jnp.bool_) if valid is None else valid
    seg = jnp.where(valid, segment.astype(jnp.int32), num_segments)  # invalid last
    index = jnp.arange(n, dtype=jnp.int32)
    sorted_seg, _, order = jax.lax.sort((seg, _sort_key(scores), index), num_keys=3)
    counts = jnp.zeros((num_segments + 1,), jnp.int32).at[seg].add(1)
    starts = jnp.cumsum(counts) - counts
    rank_in_segment = index - starts[sorted_seg]
    share_ext = jnp.concatenate([share.astype(jnp.int32), jnp.zeros((1,), jnp.int32)])
    keep_sorted = rank_in_segment < share_ext[sorted_seg]
    keep = jnp.zeros((n,), jnp.bool_).at[order].set(keep_sorted)
    return keep & valid
