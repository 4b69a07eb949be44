"""ToMe baseline: merge visual tokens by bipartite soft matching until k remain.

Spec (METHODS.md): alternate split A/B, cosine scores A·B^T, each A token's best
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

Static shapes: the token array shrinks on a static schedule N -> max(k, N//2)
-> ... -> k (an upper bound on the live count at each step), so the number of
steps and every matmul shape follow from static N and k. Padding (valid=False)
is compacted away first; a sample with fewer real tokens just runs no-op steps.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

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
    # Compact the real tokens to the front, in order; sums hold size * mean.
    sums, pos, alive = gather_kept(x, valid, n)  # [N, d], [N], [N]
    size = alive.astype(jnp.int32)
    target = jnp.minimum(k, jnp.sum(valid))
    capacities = schedule(n, k)
    for capacity in capacities[1:]:
        sums, size, pos, alive = _step(sums, size, pos, alive, target, capacity)
    merged = jnp.where(alive[:, None], sums / jnp.maximum(size, 1)[:, None], 0.0)
    return merged, size, pos.astype(jnp.int32), alive


def _step(sums, size, pos, alive, target, capacity):
    """One bipartite matching step on compacted tokens; returns them compacted to `capacity`.

    sums [C, d], size [C], pos [C], alive [C] (live tokens first, in order).
    """
    c = sums.shape[0]
    alive_a, alive_b = alive[0::2], alive[1::2]  # [ceil(C/2)], [floor(C/2)]
    # Cosine of the size-weighted sums equals cosine of the means (positive scaling).
    sim = cosine_similarity(sums[0::2], sums[1::2])  # [Ca, Cb]
    sim = jnp.where(alive_b[None, :], sim, -jnp.inf)
    best = jnp.max(sim, axis=1)  # [Ca]
    dst = jnp.argmax(sim, axis=1)  # first maximum: ties to the lower B index
    n_live = jnp.sum(alive)
    r = jnp.clip(jnp.minimum(n_live - target, jnp.sum(alive_a)), 0)
    src = topk_mask(best, r, alive_a)  # [Ca] A tokens merged away this step

    moved = jnp.where(src, size[0::2], 0)
    size_b = size[1::2].at[dst].add(moved)
    sums_b = sums[1::2].at[dst].add(jnp.where(src[:, None], sums[0::2], 0.0))
    alive_a = alive_a & ~src

    def interleave(a, b):  # back to original order: A at even ranks, B at odd
        if b.shape[0] < a.shape[0]:
            b = jnp.concatenate([b, jnp.zeros_like(a[:1])])
        return jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])[:c]

    sums = interleave(sums[0::2], sums_b)
    size = interleave(size[0::2], size_b)
    pos = interleave(pos[0::2], pos[1::2])
    alive = interleave(alive_a, alive[1::2])
    sums, slot, slot_alive = gather_kept(sums, alive, capacity)
    keep = lambda a: jnp.where(slot_alive, a[slot], 0)  # noqa: E731
    return sums, keep(size), keep(pos), slot_alive


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
