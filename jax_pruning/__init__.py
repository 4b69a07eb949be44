"""jax_pruning: training-free visual-token pruning for multimodal LLMs in JAX.

Public entry points (names and meaning fixed; the README shows each): `pruner(name, **options)` builds a validated,
hashable pruner description; `generate(model, inputs, pruner=..., max_new_tokens=...)`
runs pruned prefill + greedy decoding; the methods live in `jax_pruning.methods`,
the shared selection/graph primitives in `jax_pruning.ops`.
"""

from jax_pruning.registry import METHODS, PrunerSpec, pruner

__all__ = ["METHODS", "PrunerSpec", "generate", "pruner"]


def generate(model, inputs, pruner=None, max_new_tokens: int = 16, **kwargs):
    """See jax_pruning.engine.generate (imported lazily: `import jax_pruning` stays light)."""
    from jax_pruning.engine import generate as _generate

    return _generate(model, inputs, pruner, max_new_tokens, **kwargs)
