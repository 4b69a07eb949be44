"""Shared selection and graph primitives for the pruning methods (pure JAX, static shapes)."""

from jax_pruning.ops.checks import (
    check_array,
    check_count,
    check_finite,
    check_mask,
    check_real,
    check_same_width,
    is_traced,
)
from jax_pruning.ops.graph import (
    cosine_similarity,
    l2_norm,
    max_similarity,
    normalize_rows,
    propagate,
    safe_divide,
    softmax_graph,
    threshold_graph,
    threshold_graph_scores,
)
from jax_pruning.ops.selection import gather_kept, rank_order, segment_topk_mask, topk_mask
from jax_pruning.ops.windows import apportion, grid_coordinates, window_index

__all__ = [
    "apportion",
    "check_array",
    "check_count",
    "check_finite",
    "check_mask",
    "check_real",
    "check_same_width",
    "cosine_similarity",
    "gather_kept",
    "grid_coordinates",
    "is_traced",
    "l2_norm",
    "max_similarity",
    "normalize_rows",
    "propagate",
    "rank_order",
    "safe_divide",
    "segment_topk_mask",
    "softmax_graph",
    "threshold_graph",
    "threshold_graph_scores",
    "topk_mask",
    "window_index",
]
