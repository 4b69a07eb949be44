"""Data-parallel placement on 8 simulated CPU devices (a subprocess: the device count is fixed at start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax_pruning.parallel import data_mesh, padded_batch_size, replicate, shard_batch
    from models.config import load_config
    from models.decoder import TextModel

    assert jax.device_count() == 8, jax.devices()
    mesh = data_mesh()
    assert padded_batch_size(5, mesh) == 8 and padded_batch_size(16, mesh) == 16
    config = load_config(dict(model_type="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).text
    model = TextModel(config, rngs=nnx.Rngs(0))
    ids = np.random.default_rng(0).integers(0, 64, size=(8, 6))
    mask = np.ones_like(ids)
    want = np.asarray(model(input_ids=ids, attention_mask=mask))

    graphdef, state = nnx.split(model)
    state = replicate(state, mesh)
    batch = shard_batch({"input_ids": ids, "attention_mask": mask, "table": np.arange(3),
                         "mrope": np.zeros((3, 8, 6))}, mesh, 8)
    assert batch["mrope"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
    assert batch["input_ids"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert batch["table"].sharding.spec == jax.sharding.PartitionSpec()
    assert len(batch["input_ids"].addressable_shards) == 8

    @jax.jit
    def forward(state, ids, mask):
        return nnx.merge(graphdef, state)(input_ids=ids, attention_mask=mask)

    got = forward(state, batch["input_ids"], batch["attention_mask"])
    assert got.sharding.spec[0] == "data", got.sharding
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    try:
        shard_batch({"x": np.zeros((5, 2))}, mesh, 5)
    except ValueError as err:
        assert "pad it to 8" in str(err)
    else:
        raise AssertionError("a batch not divisible by the device count must be refused")
    print("OK")
    """
)

_GENERATE = textwrap.dedent(
    """
    import tempfile
    import jax, numpy as np, torch
    import jax_pruning as jp
    from jax_pruning.parallel import data_mesh
    from tests.engine import families as F

    torch.set_num_threads(1)
    _, model = F.build("qwen2_vl", tempfile.mkdtemp())
    one = F.batch("qwen2_vl", sizes=("square", "wide_2to1") * 4, words=("w1 w2", "w3 w4 w5 w6") * 4)
    spec = jp.pruner("hilo", keep_ratio=0.3, removal_layer=1)
    want = jp.generate(model, one, spec, 4)
    got = jp.generate(model, one, spec, 4, mesh=data_mesh())
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.visual_tokens, want.visual_tokens)
    print("OK")
    """
)


def _run(script: str):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("OK")


def test_sharded_generate_equals_single_device():
    """A batch of 8 split over 8 devices (weights replicated) generates the same tokens."""
    _run(_GENERATE)


def test_sharded_forward_equals_single_device():
    _run(_SCRIPT)
