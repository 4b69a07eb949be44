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
    from jax.sharding import PartitionSpec as P
    from flax import nnx
    from jax_pruning.engine.batch import PrefillInputs
    from jax_pruning.parallel import make_mesh, padded_batch_size, parse_mesh, to_host
    from models.config import load_config
    from models.decoder import TextModel
    from models.sharding import place_batch, shard_params

    assert jax.device_count() == 8, jax.devices()
    mesh = make_mesh()
    assert dict(mesh.shape) == {"data": 8, "model": 1}
    assert dict(parse_mesh("data=2,model=4").shape) == {"data": 2, "model": 4}
    assert dict(parse_mesh("model=2").shape) == {"data": 4, "model": 2}
    for bad in ("data=3,model=2", "data=2,model=x", "pipe=2", "data=2,data=4"):
        try:
            parse_mesh(bad)
        except ValueError as err:
            assert "mesh" in str(err) or "devices" in str(err), err
        else:
            raise AssertionError(f"{bad} must be refused")
    assert padded_batch_size(5, mesh) == 8 and padded_batch_size(16, mesh) == 16
    assert padded_batch_size(3, parse_mesh("data=2,model=4")) == 4

    # batch axes are declared, not guessed: an M-RoPE table [3, B, T] with B = 3 splits on B
    mesh = make_mesh(data=2, model=4)
    with jax.set_mesh(mesh):
        ids = place_batch(np.zeros((4, 3), np.int32))
        mrope = place_batch(np.zeros((3, 4, 3), np.int32), batch_axis=1)
        assert ids.sharding.spec == P("data") and mrope.sharding.spec == P(None, "data"), mrope.sharding
        odd = place_batch(np.zeros((3, 5)))  # 3 rows on 2 devices: replicated, never mis-split
        assert odd.sharding.spec == P(), odd.sharding
        z = np.zeros((4, 3), bool)
        batch = PrefillInputs(embeds=np.zeros((4, 3, 8)), positions=np.zeros((3, 4, 3), np.int32), mask=z,
                              additions=np.zeros((2, 4, 3, 8)), visual_index=z, visual_valid=z, visual_image=z,
                              keep_visual=z, cand_visual=z, fixed_visual=z, llm_keep=np.zeros(4, np.int32)).placed()
        assert batch.positions.sharding.spec == P(None, "data") and batch.additions.sharding.spec == P(None, "data")
        assert batch.embeds.sharding.spec == P("data") and batch.llm_keep.sharding.spec == P("data")
        np.testing.assert_array_equal(to_host(batch.positions), np.zeros((3, 4, 3)))

    # a text model's forward with tensor-parallel weights equals the one-device forward
    config = load_config(dict(model_type="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).text
    model = TextModel(config, rngs=nnx.Rngs(0))
    ids = np.random.default_rng(0).integers(0, 64, size=(8, 6))
    want = np.asarray(model(input_ids=ids))
    model.config = type("C", (), {"text": config, "vision": None})()
    with jax.set_mesh(mesh):
        shard_params(model, mesh)
        q = model.layers[0].self_attn.q_proj.kernel.get_value()
        assert q.sharding.shard_shape(q.shape) == (32, 8), q.sharding  # 1/4 of the heads per device
        got = model(input_ids=place_batch(ids))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
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
