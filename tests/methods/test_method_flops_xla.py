"""Each method's own FLOPs (what `out.stats["prune_flops"]` reports) vs XLA's cost analysis of the selection
the engine compiles, at LLaVA-NeXT-like sizes (one image: 576 base + 2,304 tile tokens, width 1024).

XLA counts a while-loop body once, whatever the trip count, so methods whose selection is a loop (DivPrune
and CDPruner: one pick per iteration; VisPruner: one de-duplication round per iteration; Hi-Lo's candidate
ranking) get a lower bound from XLA: the analytic count must be at least XLA's, and for the loop-free
selections within 10% of it. At-layer methods (FastV, DART, PyramidDrop) run inside the prefill and are
checked with it (tests/engine/test_static_shapes.py).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_pruning as jp
from jax_pruning.engine.select import _merge_group, _select_masks, selection_key
from jax_pruning.engine.tower import _tower_select
from jax_pruning.methods import declared
from jax_pruning.methods.declaration import AT_LLM_LAYER, BEFORE_LLM, IN_VISION_TOWER
from models.config import load_config
from models.visual_tokens import KIND_BASE, KIND_TILE
from tests.models import llava_tiny as lt

N_BASE, N_TILE, WIDTH, TEXT = 576, 2304, 1024, 32
S = jax.ShapeDtypeStruct


def _cost(lowered) -> tuple[float, bool]:
    compiled = lowered.compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]), bool(re.search(r"\bwhile\b", compiled.as_text()))


def _before_llm(spec, keep: int) -> tuple[float, bool]:
    n = N_BASE + N_TILE
    x = S((1, n, WIDTH), jnp.float32)
    if spec.method.merge is not None:
        return _cost(_merge_group.lower(spec.method.merge, x, S((1, n), bool), k=keep))
    kind = np.where(np.arange(n) < N_BASE, KIND_BASE, KIND_TILE).astype(np.int8)[None]
    row = np.where(np.arange(n) < N_BASE, np.arange(n) // 24, 24 + (np.arange(n) - N_BASE) // 48)[None]
    col = np.where(np.arange(n) < N_BASE, np.arange(n) % 24, (np.arange(n) - N_BASE) % 48)[None]
    budgets = [jnp.asarray([keep], jnp.int32), jnp.asarray([keep // 5], jnp.int32),
               jnp.asarray([keep - keep // 5], jnp.int32), jnp.asarray([keep], jnp.int32)]
    # as a video too (EVS reads it; the others ignore it): 5 temporal patches of 576 tokens
    frame = np.arange(n, dtype=np.int32)[None] // N_BASE
    time = (jnp.zeros((1, n), jnp.int32), jnp.asarray([[keep]], jnp.int32), jnp.asarray(frame),
            jnp.asarray(np.where(frame > 0, np.arange(n)[None] - N_BASE, -1), jnp.int32))
    lowered = _select_masks.lower(selection_key(spec), x, jnp.ones((1, n), bool), jnp.asarray(kind),
                                  jnp.asarray(row, jnp.int32), jnp.asarray(col, jnp.int32), *budgets,
                                  S((1, TEXT, WIDTH), jnp.float32), jnp.ones((1, TEXT), bool), time)
    return _cost(lowered)


def _in_tower(spec, keep: int) -> tuple[float, bool, np.ndarray, np.ndarray]:
    """One image of 5 crops of 576 tokens (LLaVA-NeXT's base + 2 x 2 tiles, no unpad)."""
    groups, n, heads, key_width = 5, N_BASE, 16, 64
    slot = np.arange(groups * n, dtype=np.int32).reshape(1, groups, n)
    budgets = np.full((1, groups), keep // groups, np.int32)
    lowered = _tower_select.lower(selection_key(spec), S((1, groups * n, heads), jnp.float32),
                                  S((1, groups * n, key_width), jnp.float32), S((1, groups * n, WIDTH), jnp.float32),
                                  jnp.asarray(slot), jnp.ones((1, groups, n), bool), jnp.asarray(budgets), main=WIDTH)
    flops, loop = _cost(lowered)
    return flops, loop, np.full((1, groups), n), budgets


@pytest.mark.parametrize("name", [m for m in declared() if jp.pruner(m, keep_ratio=0.25).method.stage != AT_LLM_LAYER])
def test_analytic_method_flops_vs_xla(name):
    spec = jp.pruner(name, keep_ratio=0.25)
    n = N_BASE + N_TILE
    keep = n // 4
    text = load_config(lt.hf_config().to_dict()).text
    if spec.method.stage == IN_VISION_TOWER:
        got, loop, sizes, budgets = _in_tower(spec, keep)
        widths = {"keys": 64, "features": WIDTH, "hidden": WIDTH, "projector": 0.0}  # projection: not in this op
        want = float(np.sum(spec.method.tower_flops(spec.options, sizes, budgets, widths)))
    else:
        if spec.method.stage != BEFORE_LLM and spec.method.effective is None:
            pytest.fail(f"{name}: unexpected stage {spec.method.stage}")
        got, loop = _before_llm(spec, keep)
        want = float(np.sum(spec.method.flops(spec, np.array([n]), WIDTH, text, np.array([n + TEXT]))))
    if name == "random":
        assert want == 0 and got < 1e-3 * n * n * WIDTH  # a key draw and a sort, no products
        return
    if loop:
        assert want >= 0.9 * got, (name, "XLA counts one loop iteration: the analytic count bounds it", got, want)
    else:
        assert abs(got - want) <= 0.10 * want, (name, got, want)
