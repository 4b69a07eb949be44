"""DivPrune (CVPR 2025): keep the most diverse visual tokens by greedy max-min selection.

Why diversity: DivPrune casts pruning as a Max-Min Diversity Problem (MMDP)
over the projected visual embeddings (the tokens the LLM receives) with the
cosine distance d(i, j) = 1 - cos(x_i, x_j), and solves it greedily. No
attention, no text: the kept set is the one spread out the most.

Specification (read from the official code, github.com/vbdi/divprune,
file LLaVA/llava/model/llava_arch.py, methods `pairwise_cosine_similarity`
and `DivPrune`, commit 799e2d950aa01ba7860907f5a6d86061f885dca6):

- First pick: for every token the official code takes the second smallest
  entry of its column of the N x N distance matrix (the smallest is the
  token's own distance 0), i.e. the distance to its nearest *other* token,
  and picks the argmax: the most isolated token. Here that is computed as
  min over valid j != i of d(i, j) (equal to the official value whenever the
  self-distance is the column's smallest entry, which exact arithmetic
  guarantees); a lone valid token has +inf.
- Next picks: the argmax over tokens of the min distance to the tokens
  already picked (a running min, updated with the distances to the newly
  picked token: O(N d) per step, no N x N matrix is kept).
- Ties go to the lower index (torch.argmax returns the first maximum).

Choices beyond the official code (all deterministic):
- Already picked tokens are excluded explicitly. The official code relies on
  their own distance 0 being the minimum; with duplicated tokens (distance 0
  to an unpicked copy) it can pick the same index twice and keep fewer than
  k tokens. Here exactly min(k, n_valid) tokens are kept.
- The budget is a count k (the official code rounds ratio * N); k >= n_valid
  keeps every valid token without running the greedy loop.
- Zero-norm tokens have cosine 0 (distance 1) to every token, themselves
  included (the official code would produce NaN).
- Padding: `valid` marks real tokens. Invalid rows are zeroed first (they may
  hold NaN or huge junk), are never picked and never enter a distance.
- Non-finite features of real tokens raise ValueError in eager calls; inside
  jit/vmap they are not checked: NaN scores then rank lowest among the
  candidates and the count stays exact, but the choice is meaningless.

`k` may be a traced int32 scalar (a per-sample budget under vmap): the greedy
loop is a `lax.while_loop` whose trip count is the traced k, so shapes never
depend on it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jax_pruning.methods import declaration
from jax_pruning.ops import check_array, check_count, check_finite, check_mask, is_traced, normalize_rows

_WHERE = "divprune.select"
_HIGHEST = jax.lax.Precision.HIGHEST
_BLOCK = 512  # column block of the first-pick nearest-neighbour scan (memory N x block)


def _nearest_other_distance(unit: Float[Array, "N d"], valid: Bool[Array, "N"], block: int) -> Float[Array, "N"]:
    """min over valid j != i of 1 - cos(x_i, x_j), scanned over column blocks; +inf without such j."""
    n = unit.shape[0]
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    cols = jnp.concatenate([unit, jnp.zeros((pad, unit.shape[1]), unit.dtype)]).reshape(n_blocks, block, -1)
    col_ok = jnp.concatenate([valid, jnp.zeros((pad,), jnp.bool_)]).reshape(n_blocks, block)
    col_id = jnp.arange(n_blocks * block, dtype=jnp.int32).reshape(n_blocks, block)
    row_id = jnp.arange(n, dtype=jnp.int32)[:, None]

    def step(best, blk):
        unit_b, ok_b, id_b = blk
        sim = jnp.matmul(unit, unit_b.T, precision=_HIGHEST)  # [N, block]
        usable = ok_b[None, :] & (id_b[None, :] != row_id)
        return jnp.maximum(best, jnp.max(jnp.where(usable, sim, -jnp.inf), axis=1)), None

    best, _ = jax.lax.scan(step, jnp.full((n,), -jnp.inf, jnp.float32), (cols, col_ok, col_id))
    return 1.0 - best  # fl(1 - c) is monotone in c, so this is min_j fl(1 - c_ij)


@functools.partial(jax.jit, static_argnames=("block",))
def _greedy(x, k, valid, *, block=_BLOCK):
    """(keep mask, pick order int32[N] padded with -1) of the greedy max-min selection."""
    n = x.shape[0]
    unit = normalize_rows(jnp.where(valid[:, None], jnp.asarray(x, jnp.float32), 0.0))
    n_valid = jnp.sum(valid.astype(jnp.int32))
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n)
    everything = k >= n_valid
    steps = jnp.where(everything, 0, k)
    first_score = _nearest_other_distance(unit, valid, block)

    def cond(carry):
        return carry[0] < steps

    def body(carry):
        i, picked, min_dist, order = carry
        score = jnp.where(i == 0, first_score, min_dist)
        score = jnp.where(jnp.isnan(score), -jnp.float32(3e38), score)  # NaN (jit, unchecked): lowest candidate
        j = jnp.argmax(jnp.where(valid & ~picked, score, -jnp.inf))  # first maximum: lower index on ties
        dist = 1.0 - jnp.matmul(unit, unit[j], precision=_HIGHEST)  # [N], O(N d)
        min_dist = jnp.where(i == 0, dist, jnp.minimum(min_dist, dist))
        return i + 1, picked.at[j].set(True), min_dist, order.at[i].set(j.astype(jnp.int32))

    init = (jnp.int32(0), jnp.zeros((n,), jnp.bool_), jnp.full((n,), jnp.inf, jnp.float32),
            jnp.full((n,), -1, jnp.int32))
    _, picked, _, order = jax.lax.while_loop(cond, body, init)
    return jnp.where(everything, valid, picked), order


def _validate(x, k, valid, where):
    check_array(x, "x", where, rank=2, kind="float")
    check_mask(valid, "valid", where, x.shape[0])
    check_count(k, "k", where, upper=x.shape[0])
    if not (is_traced(x) or is_traced(valid)):
        rows = np.ones(x.shape[0], bool) if valid is None else np.asarray(valid)
        check_finite(jnp.where(jnp.asarray(rows)[:, None], x, 0), "x", where)  # junk in padding rows is fine


def select(x: Float[Array, "N D"], k, valid: Bool[Array, "N"] | None = None) -> Bool[Array, "N"]:
    """Keep mask with exactly min(k, n_valid) True: DivPrune's greedy max-min diverse subset.

    `x`: projected visual embeddings [N, D] (any float dtype; computed in float32).
    `k`: a Python int or an integer scalar (may be traced, e.g. a per-sample budget).
    `valid`: bool [N], True for real tokens (default all); invalid rows may hold junk.
    Works under jit and vmap (over x, k and valid).
    """
    _validate(x, k, valid, _WHERE)
    valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
    if x.shape[0] == 0:
        return jnp.zeros((0,), jnp.bool_)
    return _greedy(x, k, valid)[0]


def pick_order(x: Float[Array, "N D"], k, valid: Bool[Array, "N"] | None = None) -> Int[Array, "N"]:
    """The greedy picks in order (int32 [N], -1 after the last pick); empty (all -1) when k >= n_valid.

    For inspection and tests: `select` keeps exactly these tokens when k < n_valid.
    """
    _validate(x, k, valid, "divprune.pick_order")
    valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
    if x.shape[0] == 0:
        return jnp.zeros((0,), jnp.int32)
    return _greedy(x, k, valid)[1]


def _select_sample(options, s):
    return select(s.x, s.keep, s.valid), jnp.zeros_like(s.valid)


def _flops(spec, n, width, text, tokens):
    """The first pick's nearest-neighbour scan (n x n cosines) plus one n-row distance update per
    pick (at most n): two n x n graphs of width d."""
    return 2 * declaration.graph_flops(n, width)


METHOD = declaration.Method(
    name="divprune",
    stage=declaration.BEFORE_LLM,
    options={},
    select=_select_sample,
    flops=_flops,
)
