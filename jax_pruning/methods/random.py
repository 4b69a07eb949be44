"""Random baseline: keep k tokens chosen uniformly at random among the valid ones.

Why a permutation and not uniform floats as priorities: float32 uniforms have
only 2^23 distinct values, so among a few thousand tokens ties are likely and
the tie rule (lower index wins) would bias the choice. A random permutation
gives distinct priorities, hence an exactly uniform k-subset of the valid
tokens, reproducible from the key.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.selection import topk_mask


def select(key, k, valid: Bool[Array, "N"]) -> Bool[Array, "N"]:
    """Keep mask with min(k, n_valid) True at uniformly random valid positions.

    `key`: a jax.random key (typed or raw uint32[2]) or a non-negative int seed.
    `k`: a Python int or an integer scalar (may be traced, e.g. a per-sample budget).
    Same key -> same mask. Works under jit and vmap (over keys, k and valid).
    """
    where = "random.select"
    checks.check_array(valid, "valid", where, rank=1, kind="bool")
    checks.check_count(k, "k", where, upper=valid.shape[0])
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"{where}: an int seed must be >= 0, got {key}")
        key = jax.random.key(key)
    n = valid.shape[0]
    priority = jax.random.permutation(key, n).astype(jnp.float32)  # distinct, exact below 2^24
    return topk_mask(priority, k, valid)


def _select_sample(options, s):
    """The engine's per-sample call: a reproducible stream per (seed, batch index)."""
    key = jax.random.fold_in(jax.random.key(options["seed"]), s.sample)
    return select(key, s.keep, s.valid), jnp.zeros_like(s.valid)


METHOD = declaration.Method(
    name="random",
    stage=declaration.BEFORE_LLM,
    options={"seed": (0, declaration.integer("an integer >= 0", 0))},
    select=_select_sample,
)
