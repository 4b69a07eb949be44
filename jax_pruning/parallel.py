"""Device meshes and placement: one SPMD program over a 2-D ("data", "model") mesh.

    mesh = make_mesh(data=2, model=4)          # 8 devices: batch split in 2, weights split in 4
    model = models.load(path, dtype="bfloat16", mesh=mesh)
    out = jp.generate(model, inputs, pruner, mesh=mesh)

"data" splits the batch (images / crops / samples, and the KV cache's batch
axis); "model" splits the weights (Megatron tensor parallelism, see
models/sharding.py) and the KV cache's head axis. Every stage of the engine is
jitted with its inputs placed at declared `PartitionSpec`s and its outputs
constrained to theirs, and XLA partitions the rest: the same code runs on one
device, on a mesh, and over several processes (hosts).

Multi-process: call `initialize_distributed()` (or `jax.distributed.initialize`)
first; `jax.devices()` then lists every process's devices and the mesh spans
them. Host-side planning (tokenising, layouts, buckets) is cheap NumPy and is
done identically by every process on the whole global batch; `put` then hands
each process's devices only their own slices, and `to_host` gathers results.
"""

from __future__ import annotations

import os
import jax
import numpy as np
from jax.sharding import AxisType, Mesh

DATA, MODEL = "data", "model"


def make_mesh(data: int | None = None, model: int = 1, devices=None) -> Mesh:
    """A ("data", "model") mesh; default: every device on "data", model 1.

    data * model must equal the number of devices (all of `jax.devices()` by default).
    """
    devices = jax.devices() if devices is None else list(devices)
    if not isinstance(model, int) or model < 1:
        raise ValueError(f"make_mesh: model must be a positive integer, got {model!r}")
    if data is None:
        if len(devices) % model:
            raise ValueError(f"make_mesh: model={model} does not divide the {len(devices)} devices")
        data = len(devices) // model
    if not isinstance(data, int) or data < 1 or data * model != len(devices):
        raise ValueError(f"make_mesh: data={data} x model={model} must equal the {len(devices)} devices")
    return jax.make_mesh((data, model), (DATA, MODEL), devices=devices, axis_types=(AxisType.Auto,) * 2)


def data_mesh(devices=None) -> Mesh:
    """Every device on "data" (weights replicated): `make_mesh()`."""
    return make_mesh(devices=devices)


def data_size(mesh: Mesh | None) -> int:
    """Devices along "data" (1 without a mesh)."""
    return 1 if mesh is None else int(mesh.shape.get(DATA, 1))


def padded_batch_size(batch_size: int, mesh: Mesh | None) -> int:
    """The smallest multiple of the data-axis size >= batch_size."""
    n = data_size(mesh)
    return -(-batch_size // n) * n


def to_host(x) -> np.ndarray:
    """NumPy copy of a (possibly multi-process) global array, the same on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def mesh_axis_sizes(text: str) -> dict[str, int | None]:
    """'data=2,model=4' -> {"data": 2, "model": 4}; an axis may be omitted or 'all' (None)."""
    sizes: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep or key not in (DATA, MODEL):
            raise ValueError(f"mesh {text!r}: expected 'data=D,model=M', e.g. data=2,model=4 (got {part!r})")
        if key in sizes:
            raise ValueError(f"mesh {text!r}: axis {key!r} given twice")
        if value == "all":
            sizes[key] = None
        elif value.isdigit() and int(value) >= 1:
            sizes[key] = int(value)
        else:
            raise ValueError(f"mesh {text!r}: {key} must be a whole number >= 1 or 'all', got {value!r}")
    return sizes


def parse_mesh(text: str, devices=None) -> Mesh:
    """'data=2,model=4' -> make_mesh(...); a missing or 'all' data axis takes the remaining devices."""
    sizes = mesh_axis_sizes(text)
    return make_mesh(data=sizes.get(DATA), model=sizes.get(MODEL) or 1, devices=devices)


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, heartbeat_timeout: int = 100) -> None:
    """`jax.distributed.initialize`, from arguments or the cluster environment (SLURM, TPU pods, ...).

    On CPU-only processes the cross-process collectives go through gloo.
    """
    if os.environ.get("JAX_PLATFORMS", "") == "cpu" or jax.config.jax_platforms == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if coordinator is not None:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator needs --num-processes and --process-id")
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout, **kwargs)
