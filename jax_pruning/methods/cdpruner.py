"""CDPruner (NeurIPS 2025): keep visual tokens by MAP inference of an instruction-conditioned DPP.

Why: attention-based pruning keeps many near-duplicate tokens, similarity-based
pruning ignores the question. CDPruner scores subsets by the determinant of a
conditional DPP kernel L = diag(r) S diag(r): S (feature cosine similarity)
rewards diversity, r (instruction relevance) rewards quality; the kept set is
found greedily.

Specification (read from the official code, github.com/Theia-4869/CDPruner,
file llava/model/llava_arch.py, method `encode_images`, and
llava/model/multimodal_encoder/clip_encoder.py, commit
9541616c40fcd5625de1cdb8ea6c33c129eb7864):

- S_ij = cos(x_i, x_j) of the projected visual features x (the tokens the LLM
  receives).
- Relevance: c_i = -cos(x_i, t) with the instruction embedding t (the
  official code negates the image-text similarity; asked why, the maintainer
  answered (issue #14, pointing to #9) that this inversion was observed only
  with CLIP as used in LLaVA. It is the default here because it is the
  official code; whether it holds for LLM input embeddings is untested, and
  `negate_relevance=False` switches it off), then min-max normalised over
  the (valid) tokens: r = (c - min c + 1e-6) / (max c - min c).
- Optional (commented out in the official code, off by default there and
  here): with `theta`, r <- exp(alpha r), alpha = theta / (2 (1 - theta)).
- Kernel L_ij = r_i S_ij r_j.
- Greedy MAP inference: the fast incremental Cholesky greedy of Chen et al.
  (NeurIPS 2018, "Fast greedy MAP inference for DPP") as in the official
  code: d2 = diag(L); each step picks j = argmax d2, appends the row
  e = (L_j - sum_t c_tj c_t) / sqrt(d2_j) to the Cholesky factor and updates
  d2 -= e^2. Ties go to the lower index (torch.argmax: first maximum).

Differences from the official code (all deterministic):
- Instruction embedding: the official code encodes the instruction with
  CLIP's text tower (77-token chunks, one embedding per chunk, relevance
  averaged over chunks) and the image with CLIP's projected image embeddings.
  Here `instruction` is the model's own input text embeddings of the
  instruction tokens [M, D] (same space as x): t is their mean over the valid
  rows (a single [D] vector is used as is), and c_i = cos(x_i, t).
- The official min/max runs over the whole batch (all LLaVA-NeXT crops at
  once); here it runs over the valid tokens of one call. If max c == min c
  (no relevance contrast, e.g. a zero instruction) r is 1 everywhere (plain
  DPP) instead of a division by zero.
- Stop rule (after Chen et al.'s epsilon; the official code has none and
  would take the square root of a non-positive d2 or pick by round-off): a
  token whose gain d2_i is <= `epsilon` * L_ii (its residual direction is
  under sqrt(epsilon) = 1% of its norm: it is spanned by the picks up to
  float32 round-off, e.g. duplicates, or k > rank of S) stops being a
  candidate; the argmax runs over the remaining candidates only, so on
  non-degenerate features (every token a candidate) the picks are the
  official ones. With no candidate left the greedy stops and the rest of the
  budget goes to the unpicked valid tokens with the highest relevance r
  (ties to the lower index), so exactly min(k, n_valid) tokens are kept.
  The test is relative to each token's own L_ii because the round-off of d2_i
  scales with L_ii (r_i^2 can be as small as ~1e-12).
- Budget k is a count; k >= n_valid keeps every valid token without running
  the greedy loop.
- `max_k` (static, default N) bounds the greedy steps: the Cholesky factor is
  [max_k, N] float32 (33 MB at N = 2880, max_k = N; pass the largest budget
  you use). Step i reads only the first i factor rows (in chunks of 128). A traced k above max_k runs max_k greedy steps and fills the rest
  by relevance; a concrete k above max_k (and below n_valid) raises.
- Ablation: `use_relevance=False` is the plain (unconditional) DPP on S
  (r = 1; `instruction` may then be None).
- The initial gains are L_ii = r_i^2 exactly (S_ii = 1), not the float
  round-off of |u_i|^2: with equal relevance (e.g. the plain DPP, r = 1) the
  first pick is then a true tie and goes to the lower index instead of to
  the token whose norm rounds highest.
- Zero-norm tokens have cosine 0 with everything, itself included (so
  L_ii = 0; they are only kept by the fill step).
- Padding: `valid` marks real tokens, `instruction_valid` real instruction
  rows. Invalid rows are zeroed first (they may hold junk), never picked and
  never enter a similarity, relevance, min/max or mean.
- Non-finite values in real rows raise ValueError in eager calls; inside
  jit/vmap they are not checked (NaN gains stop the greedy, the fill ranks
  NaN lowest, the count stays exact; the choice is then meaningless).

`k` may be a traced int32 scalar (a per-sample budget under vmap): the greedy
loop is a `lax.while_loop` whose trip count is the traced k.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jax_pruning.methods import declaration
from jax_pruning.ops import (
    check_array,
    check_count,
    check_finite,
    check_mask,
    check_real,
    check_same_width,
    is_traced,
    normalize_rows,
    topk_mask,
)

_WHERE = "cdpruner.select"
_HIGHEST = jax.lax.Precision.HIGHEST
_CHUNK = 128  # rows of the Cholesky factor read at a time

# Official defaults (llava/model/llava_arch.py at the commit above).
NEGATE_RELEVANCE = True  # relevance = (-cos).mean(...)
RELEVANCE_OFFSET = 1e-6  # (c - min + 1e-6) / (max - min)
THETA = None  # the exp(alpha r) reweighting is commented out officially (its example value: 0.5)
# Ours (Chen et al.: an absolute 1e-10 in float64), relative to each L_ii. Measured on clustered features
# (N=2880, d=1024): float32 round-off of d2_i / L_ii reaches ~3e-5 after 1024 updates (rank exhausted),
# while the genuine ratios of the last picks before exhaustion stay >= 2e-3.
EPSILON = 1e-4


@jax.jit
def instruction_embedding(
    instruction: Float[Array, "M D"] | Float[Array, "D"], instruction_valid: Bool[Array, "M"] | None = None
) -> Float[Array, "D"]:
    """Mean of the valid instruction rows (float32); a [D] vector is returned as is; no valid row -> zeros."""
    t = jnp.asarray(instruction, jnp.float32)
    if t.ndim == 1:
        return t
    rows = jnp.ones((t.shape[0],), jnp.bool_) if instruction_valid is None else instruction_valid
    count = jnp.sum(rows.astype(jnp.float32))
    total = jnp.sum(jnp.where(rows[:, None], t, 0.0), axis=0)
    return total / jnp.maximum(count, 1.0)


@functools.partial(jax.jit, static_argnames=("negate_relevance", "theta"))
def relevance(
    x: Float[Array, "N D"],
    t: Float[Array, "D"],
    valid: Bool[Array, "N"],
    *,
    negate_relevance: bool = NEGATE_RELEVANCE,
    theta: float | None = THETA,
) -> Float[Array, "N"]:
    """Official relevance r (float32; 0 at invalid tokens): min-max normalised (+-)cos(x_i, t), then exp(alpha r)."""
    x = jnp.where(valid[:, None], jnp.asarray(x, jnp.float32), 0.0)
    t_unit = normalize_rows(jnp.asarray(t, jnp.float32)[None, :])[0]
    c = jnp.matmul(normalize_rows(x), t_unit, precision=_HIGHEST)
    if negate_relevance:
        c = -c
    lo = jnp.min(jnp.where(valid, c, jnp.inf), initial=jnp.inf)
    hi = jnp.max(jnp.where(valid, c, -jnp.inf), initial=-jnp.inf)
    span = hi - lo
    contrast = jnp.isfinite(span) & (span > 0)  # else (one token, equal cosines, zero instruction): r = 1
    lo, span = jnp.where(contrast, lo, 0.0), jnp.where(contrast, span, 1.0)
    r = jnp.where(contrast, (c - lo + RELEVANCE_OFFSET) / span, 1.0)
    if theta is not None:
        r = jnp.exp((theta / (2.0 * (1.0 - theta))) * r)
    return jnp.where(valid, r, 0.0)


def _factor_product(factor: Float[Array, "R N"], column: Float[Array, "R"], used, chunk: int) -> Float[Array, "N"]:
    """column @ factor over the first `used` rows only (chunks of `chunk` rows; the rest are zero anyway).

    Why: a plain matvec would read all max_k rows at every step; this reads about i rows at step i,
    so a call costs what its own k needs, not what the static bound max_k allows.
    """
    def add(c, total):
        rows = jax.lax.dynamic_slice_in_dim(factor, c * chunk, chunk, axis=0)
        weights = jax.lax.dynamic_slice_in_dim(column, c * chunk, chunk)
        return total + jnp.matmul(weights, rows, precision=_HIGHEST)

    n_chunks = (used + chunk - 1) // chunk
    return jax.lax.fori_loop(0, n_chunks, add, jnp.zeros((factor.shape[1],), jnp.float32))


@functools.partial(jax.jit, static_argnames=("max_k", "negate_relevance", "theta", "use_relevance", "epsilon"))
def _greedy(x, instruction, instruction_valid, k, valid, *, max_k, negate_relevance, theta, use_relevance,
            epsilon):
    """(keep mask, greedy pick order int32[max_k] padded with -1)."""
    n = x.shape[0]
    unit = normalize_rows(jnp.where(valid[:, None], jnp.asarray(x, jnp.float32), 0.0))
    if use_relevance:
        t = instruction_embedding(instruction, instruction_valid)
        r = relevance(x, t, valid, negate_relevance=negate_relevance, theta=theta)
    else:
        r = valid.astype(jnp.float32)
    nonzero = jnp.any(unit != 0, axis=1)
    diag = jnp.where(nonzero, r * r, 0.0)  # L_ii = r_i S_ii r_i with S_ii = 1 exactly (0 for a zero row)
    floor = epsilon * diag  # per token: below it the token is (numerically) spanned by the picks
    n_valid = jnp.sum(valid.astype(jnp.int32))
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n)
    everything = k >= n_valid
    steps = jnp.where(everything, 0, jnp.minimum(k, max_k))

    def cond(carry):
        i, stopped = carry[0], carry[1]
        return (i < steps) & ~stopped

    def body(carry):
        i, _, picked, gain, factor, order = carry  # i < steps <= max_k
        candidate = valid & ~picked & (gain > floor)
        j = jnp.argmax(jnp.where(candidate, gain, -jnp.inf))  # first maximum: lower index on ties
        best = gain[j]
        go = candidate[j]  # no candidate left (or NaN gains): stop, the fill step takes over
        row = r[j] * r * jnp.matmul(unit, unit[j], precision=_HIGHEST)  # L_j, O(N D)
        row = row - _factor_product(factor, factor[:, j], i, chunk)  # sum_t c_tj c_t over the i rows so far
        e = jnp.where(go & valid, row / jnp.sqrt(jnp.where(go, best, 1.0)), 0.0)
        factor = jax.lax.dynamic_update_slice(factor, e[None, :], (i, 0))
        order = order.at[i].set(jnp.where(go, j.astype(jnp.int32), -1))
        return i + go.astype(jnp.int32), ~go, picked.at[j].set(picked[j] | go), gain - e * e, factor, order

    chunk = min(_CHUNK, max_k)
    rows = -(-max_k // chunk) * chunk
    init = (jnp.int32(0), jnp.bool_(False), jnp.zeros((n,), jnp.bool_), diag,
            jnp.zeros((rows, n), jnp.float32), jnp.full((max_k,), -1, jnp.int32))
    _, _, picked, _, _, order = jax.lax.while_loop(cond, body, init)
    rest = jnp.maximum(k - jnp.sum(picked.astype(jnp.int32)), 0)
    keep = picked | topk_mask(r, rest, valid & ~picked)
    return jnp.where(everything, valid, keep), order


def _validate(x, instruction, k, valid, instruction_valid, max_k, use_relevance, theta, epsilon, where):
    check_array(x, "x", where, rank=2, kind="float")
    n = x.shape[0]
    check_mask(valid, "valid", where, n)
    check_count(k, "k", where, upper=n)
    if max_k is not None and (isinstance(max_k, bool) or not isinstance(max_k, numbers.Integral) or max_k < 1):
        raise ValueError(f"{where}: `max_k` must be a static int >= 1 or None, got {max_k!r}")
    if theta is not None:
        check_real(theta, "theta", where, low=0.0, high=1.0)
        if theta >= 1.0:
            raise ValueError(f"{where}: `theta` must be < 1, got {theta}")
    check_real(epsilon, "epsilon", where, low=0.0)
    if use_relevance and instruction is None:
        raise ValueError(f"{where}: `instruction` is required when use_relevance=True")
    if instruction is not None:
        if not (hasattr(instruction, "shape") and len(np.shape(instruction)) in (1, 2)):
            raise ValueError(f"{where}: `instruction` must be an array of rank 1 or 2, got shape "
                             f"{np.shape(instruction)}")
        check_array(instruction, "instruction", where, rank=len(np.shape(instruction)), kind="float")
        check_same_width(x, instruction, "x", "instruction", where)
        if instruction.ndim == 1 and instruction_valid is not None:
            raise ValueError(f"{where}: `instruction_valid` needs a 2-D `instruction` [M, D]")
        if instruction.ndim == 2:
            check_mask(instruction_valid, "instruction_valid", where, instruction.shape[0])
    if not any(is_traced(a) for a in (x, valid)):
        rows = np.ones(n, bool) if valid is None else np.asarray(valid)
        check_finite(jnp.where(jnp.asarray(rows)[:, None], x, 0), "x", where)  # junk in padding rows is fine
        if max_k is not None and not is_traced(k) and max_k < int(k) < int(rows.sum()):
            raise ValueError(f"{where}: `k` ({int(k)}) exceeds the static `max_k` ({max_k})")
    if instruction is not None and use_relevance and not any(is_traced(a) for a in (instruction, instruction_valid)):
        t = jnp.asarray(instruction)
        if t.ndim == 2:
            t_rows = np.ones(t.shape[0], bool) if instruction_valid is None else np.asarray(instruction_valid)
            if not t_rows.any():
                raise ValueError(f"{where}: `instruction` has no valid row (`instruction_valid` is all False)")
            t = jnp.where(jnp.asarray(t_rows)[:, None], t, 0)
        check_finite(t, "instruction", where)


def _prepare(x, instruction, k, valid, instruction_valid, max_k, use_relevance, theta, epsilon, where):
    """Validate; return (valid mask, instruction or None, its mask or None, static loop bound)."""
    _validate(x, instruction, k, valid, instruction_valid, max_k, use_relevance, theta, epsilon, where)
    n = x.shape[0]
    valid = jnp.ones((n,), jnp.bool_) if valid is None else jnp.asarray(valid)
    if not use_relevance:
        instruction = instruction_valid = None
    elif instruction.ndim == 1:
        instruction_valid = None
    return valid, instruction, instruction_valid, max(1, n if max_k is None else min(int(max_k), n))


def _run(x, instruction, k, valid, instruction_valid, max_k, negate_relevance, theta, use_relevance, epsilon, where):
    valid, instruction, instruction_valid, max_k = _prepare(x, instruction, k, valid, instruction_valid, max_k,
                                                            use_relevance, theta, epsilon, where)
    if x.shape[0] == 0:
        return jnp.zeros((0,), jnp.bool_), jnp.zeros((0,), jnp.int32)
    return _greedy(x, instruction, instruction_valid, k, valid, max_k=max_k, negate_relevance=bool(negate_relevance),
                   theta=None if theta is None else float(theta), use_relevance=bool(use_relevance),
                   epsilon=float(epsilon))


def select(
    x: Float[Array, "N D"],
    instruction: Float[Array, "M D"] | Float[Array, "D"] | None,
    k,
    valid: Bool[Array, "N"] | None = None,
    instruction_valid: Bool[Array, "M"] | None = None,
    *,
    max_k: int | None = None,
    negate_relevance: bool = NEGATE_RELEVANCE,
    theta: float | None = THETA,
    use_relevance: bool = True,
    epsilon: float = EPSILON,
) -> Bool[Array, "N"]:
    """Keep mask with exactly min(k, n_valid) True: CDPruner's greedy conditional-DPP MAP subset.

    `x`: projected visual embeddings [N, D]; `instruction`: the instruction's
    input text embeddings [M, D] (averaged over `instruction_valid` rows) or
    one [D] embedding. `k`: a Python int or an integer scalar (may be traced).
    Options: see the module docstring. Works under jit and vmap (over x,
    instruction, k and the masks).
    """
    return _run(x, instruction, k, valid, instruction_valid, max_k, negate_relevance, theta, use_relevance, epsilon,
                _WHERE)[0]


def pick_order(
    x: Float[Array, "N D"],
    instruction: Float[Array, "M D"] | Float[Array, "D"] | None,
    k,
    valid: Bool[Array, "N"] | None = None,
    instruction_valid: Bool[Array, "M"] | None = None,
    *,
    max_k: int | None = None,
    negate_relevance: bool = NEGATE_RELEVANCE,
    theta: float | None = THETA,
    use_relevance: bool = True,
    epsilon: float = EPSILON,
) -> Int[Array, "K"]:
    """Greedy picks in order (int32 [max_k], -1 after the last one; the fill step is not listed).

    For inspection and tests; all -1 when k >= n_valid (everything is kept).
    """
    return _run(x, instruction, k, valid, instruction_valid, max_k, negate_relevance, theta, use_relevance, epsilon,
                "cdpruner.pick_order")[1]


def _select_sample(options, s):
    """Instruction: the sample's instruction tokens' input embeddings (engine: the real text tokens after
    its last visual token), averaged."""
    keep = select(s.x, s.text, s.keep, s.valid, s.text_valid, negate_relevance=options["negate_relevance"],
                  use_relevance=options["relevance"], epsilon=options["epsilon"])
    return keep, jnp.zeros_like(s.valid)


def _flops(spec, n, width, text, tokens):
    """Upper bound: relevance (n cosines) and up to n greedy steps, each one kernel row (2 n d) and its
    product with the factor rows so far (2 i n, summed: n^3)."""
    n = np.asarray(n, float)
    return 2.0 * n * width + declaration.graph_flops(n, width) + n * n * n


METHOD = declaration.Method(
    name="cdpruner",
    stage=declaration.BEFORE_LLM,
    options={
        "relevance": (True, declaration.flag),
        "negate_relevance": (NEGATE_RELEVANCE, declaration.flag),
        "epsilon": (EPSILON, declaration.POSITIVE),
    },
    select=_select_sample,
    flops=_flops,
)
