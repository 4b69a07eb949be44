"""jax_pruning: training-free visual-token pruning for multimodal LLMs in JAX.

Public entry points (see API.md): `pruner(name, **options)` builds a validated,
hashable pruner description; the methods live in `jax_pruning.methods`, the
shared selection/graph primitives in `jax_pruning.ops`.
"""

from jax_pruning.registry import METHODS, PrunerSpec, pruner

__all__ = ["METHODS", "PrunerSpec", "pruner"]
