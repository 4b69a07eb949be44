"""ToMe baseline: merge visual tokens by bipartite soft matching until k remain.

Spec: alternate split A/B, cosine scores A·B^T, each A token's best
B match, merge the top-r A tokens into their matches by size-weighted average,
repeat until k remain (each step merges at most half).

How this differs from the official ToMe code (facebookresearch/ToMe,
`bipartite_soft_matching`), on purpose:
- Official ToMe runs inside every ViT block with a fixed r per block and
  matches on the attention keys; here it runs once on the tokens the LLM would
  see, repeating steps until k remain, matching on the (merged) tokens
  themselves.
- Official ToMe re-concatenates [unmerged A, B] after a merge, so the next
  split alternates over a shuffled order; we put survivors back in original
  order, so every step alternates over the current remaining tokens in image
  order (A = even ranks, B = odd ranks) and the output keeps image order.
- Official r is capped at floor(t/2); ours is r = min(n - k, |A|) with
  |A| = ceil(n/2), so an odd count can reach k one step sooner.
- Ties (equal best similarity) go to the lower index; official order is
  whatever argsort gives. No protected class token, no proportional attention.

Static shapes: the live tokens are tracked as a compacted index `rows` that
shrinks on a static schedule N -> max(k, N//2) -> ... -> k (an upper bound on
the live count at each step), so the number of steps and every matmul shape
follow from static N and k. Features stay in their original rows (merges are
scatter-adds), so a step moves only the two matched halves, not the whole
token array. Padding (valid=False) never enters `rows`; a sample with fewer
real tokens just runs no-op steps.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.graph import cosine_similarity
from jax_pruning.ops.selection import gather_kept, topk_mask


def merge(x, k: int, *, valid=None):
    """Merge the valid tokens of x [N, d] down to min(k, n_valid) tokens.

    Returns (merged [k, d] float32, size int32[k], index int32[k], slot_valid bool[k]):
    survivors in original order in the first slots; `merged` is the size-weighted
    mean of the tokens merged into a slot, `size` how many original tokens it
    holds, `index` the original position of the surviving token (a merge
    destination keeps its own position; use it for position ids). Unused slots:
    zeros, size 0, index 0, slot_valid False. k is a static int with 1 <= k <= N.

    Eager calls check the inputs (ValueError for bad k, shapes, NaN/inf, no valid
    token); under jit only the static checks run and an all-invalid sample
    yields all slots invalid.
    """
    n = _check_inputs(x, k, valid)
    if valid is None:
        valid = jnp.ones((n,), bool)
    return _merge(jnp.asarray(x, jnp.float32), jnp.asarray(valid, bool), k)


def schedule(n: int, k: int) -> list[int]:
    """Static capacities: live tokens before each step, ending at k ([n] when n == k)."""
    capacities = [n]
    while capacities[-1] > k:
        capacities.append(max(k, capacities[-1] // 2))
    return capacities


@functools.partial(jax.jit, static_argnames="k")
def _merge(x, valid, k):
    n = x.shape[0]
    # Features stay in their original rows; a step only moves the small `rows` index.
    # sums[i] = size[i] * (mean of the tokens merged into token i).
    sums = jnp.where(valid[:, None], x, 0.0)  # [N, d]
    size = valid.astype(jnp.int32)  # [N]
    _, rows, live = gather_kept(jnp.arange(n), valid, n)  # live token rows first, in order
    target = jnp.minimum(k, jnp.sum(valid))
    for capacity in schedule(n, k)[1:]:
        sums, size, rows, live = _step(sums, size, rows, live, target, capacity)
    merged = jnp.where(live[:, None], sums[rows] / jnp.maximum(size[rows], 1)[:, None], 0.0)
    return merged, jnp.where(live, size[rows], 0), jnp.where(live, rows, 0), live


def _step(sums, size, rows, live, target, capacity):
    """One bipartite matching step over the live tokens rows[live] (C slots, in order).

    Returns the updated sums [N, d] and size [N], and the live rows compacted to
    `capacity` slots.
    """
    n, c = sums.shape[0], rows.shape[0]
    rows_a, rows_b = rows[0::2], rows[1::2]  # A = even ranks, B = odd ranks
    live_a, live_b = live[0::2], live[1::2]
    a = sums[rows_a]  # [ceil(C/2), d]
    # Cosine of the size-weighted sums equals cosine of the means (positive scaling).
    sim = cosine_similarity(a, sums[rows_b])  # [Ca, Cb]
    sim = jnp.where(live_b[None, :], sim, -jnp.inf)
    best = jnp.max(sim, axis=1)
    dst = jnp.argmax(sim, axis=1)  # first maximum: ties to the lower B index
    r = jnp.clip(jnp.minimum(jnp.sum(live) - target, jnp.sum(live_a)), 0)
    src = topk_mask(best, r, live_a)  # A tokens merged away this step
    into = jnp.where(src, rows_b[dst], n)  # row n is out of range: dropped
    sums = sums.at[into].add(a, mode="drop")
    size = size.at[into].add(size[rows_a], mode="drop")

    def interleave(x_a, x_b):  # back to original order: A at even ranks, B at odd
        if x_b.shape[0] < x_a.shape[0]:
            x_b = jnp.concatenate([x_b, jnp.zeros_like(x_a[:1])])
        return jnp.stack([x_a, x_b], axis=1).reshape(-1)[:c]

    rows, _, live = gather_kept(interleave(rows_a, rows_b), interleave(live_a & ~src, live_b), capacity)
    return sums, size, rows, live


def _check_inputs(x, k, valid) -> int:
    where = "tome.merge"
    checks.check_array(x, "x", where, rank=2, kind="float")
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{where}: `k` must be a static Python int (it sets the output shape), "
                         f"got {type(k).__name__} {k!r}")
    if not 1 <= k <= n:
        raise ValueError(f"{where}: `k` must be in [1, N] = [1, {n}], got {k}")
    checks.check_mask(valid, "valid", where, n)
    checks.check_finite(x, "x", where)
    if valid is not None and not checks.is_traced(valid) and not bool(np.any(valid)):
        raise ValueError(f"{where}: `valid` has no True entry (no token to merge)")
    return n


def merge_in_place(x, valid, k: int):
    """x [N, d] -> (keep [N]: the surviving tokens, x with each survivor's row holding its merged mean,
    merged [N]: survivors that absorbed others, absorbed [N]: the tokens merged away).

    The before-LLM form the engine uses: the LLM sees the survivors at their own positions.
    """
    merged, size, index, slot_valid = merge(x, k, valid=valid)
    target = jnp.where(slot_valid, index, x.shape[0])
    keep = jnp.zeros(x.shape[0], bool).at[index].max(slot_valid)
    holds = jnp.zeros(x.shape[0], bool).at[target].set(size > 1, mode="drop")
    out = x.at[target].set(merged.astype(x.dtype), mode="drop")
    absorbed = (jnp.ones(x.shape[0], bool) if valid is None else valid) & ~keep
    return keep, out, holds, absorbed


def _flops(spec, n, width: int) -> np.ndarray:
    """Each step of the static schedule: the ceil(c/2) x floor(c/2) cosine matrix over the c live slots
    (halving steps: about n^2/4 + n^2/16 + ... matchings of width d)."""
    out = []
    for count in np.atleast_1d(np.asarray(n, np.int64)):
        k = max(1, int(np.floor(spec.keep_ratio * count)))
        steps = schedule(int(count), min(k, int(count))) if count else [0]
        out.append(sum(2.0 * ((c + 1) // 2) * (c // 2) * width for c in steps[:-1]))
    return np.asarray(out, float).reshape(np.shape(n))


METHOD = declaration.Method(
    name="tome",
    stage=declaration.BEFORE_LLM,
    options={},
    merge=merge_in_place,
    flops=lambda spec, n, width, text, tokens: _flops(spec, n, width),
)
