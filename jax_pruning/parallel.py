"""Data parallelism: one `("data",)` mesh over every device; batches split, weights replicated.

This is what JAX recommends in place of `pmap`: place the inputs with a
`NamedSharding` and let `jit` partition the computation. Batched arrays are
split along their leading axis, everything else (weights, small tables) is
replicated. The batch size must be a multiple of the device count; the eval
runner pads the last batch (and masks the padding) to keep shapes static.

Multi-host: call `jax.distributed.initialize()` first on every host (it reads
the coordinator address, process count and id from the cluster environment or
from its arguments); `jax.devices()` then lists every host's devices, the mesh
spans them all, and each host feeds the rows of its own shard.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all devices).

    Auto axis: the compiler propagates the batch split through the model (no
    per-op sharding annotations in model code).
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), devices=devices, axis_types=(AxisType.Auto,))


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The smallest multiple of the device count >= batch_size."""
    n = mesh.devices.size
    return -(-batch_size // n) * n


def shard_batch(tree: Any, mesh: Mesh, batch_size: int) -> Any:
    """Split every array's batch axis over "data" (the leading axis, or the second for stacked
    per-batch arrays such as M-RoPE ids [3, B, T] and deepstack [n, B, T, D]); replicate the rest."""
    if batch_size % mesh.devices.size:
        raise ValueError(
            f"batch size {batch_size} is not a multiple of the {mesh.devices.size} devices; "
            f"pad it to {padded_batch_size(batch_size, mesh)}"
        )
    split = NamedSharding(mesh, PartitionSpec("data"))
    split_second = NamedSharding(mesh, PartitionSpec(None, "data"))
    whole = NamedSharding(mesh, PartitionSpec())

    def place(x):
        if not hasattr(x, "shape"):
            return x
        shape = np.shape(x)
        if len(shape) >= 1 and shape[0] == batch_size:
            return jax.device_put(x, split)
        if len(shape) >= 2 and shape[1] == batch_size:
            return jax.device_put(x, split_second)
        return jax.device_put(x, whole)

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array on every device (the weights, under data parallelism)."""
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, whole) if hasattr(x, "shape") else x, tree)
