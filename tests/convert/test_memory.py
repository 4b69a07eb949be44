"""Peak memory of converting a ~1.1 GB checkpoint stays near the largest tensor, not the model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]

# Llama-shaped: vocab 32000 x 2048 embeddings and lm_head (250 MiB each in float32), 3 layers.
V, D, F, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32000, 2048, 6144, 3, 16, 4, 128


def _layer_shapes(i: int) -> dict[str, tuple[int, ...]]:
    p = f"model.layers.{i}."
    return {
        p + "self_attn.q_proj.weight": (HEADS * HEAD_DIM, D),
        p + "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, D),
        p + "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, D),
        p + "self_attn.o_proj.weight": (D, HEADS * HEAD_DIM),
        p + "mlp.gate_proj.weight": (F, D),
        p + "mlp.up_proj.weight": (F, D),
        p + "mlp.down_proj.weight": (D, F),
        p + "input_layernorm.weight": (D,),
        p + "post_attention_layernorm.weight": (D,),
    }


def write_big_checkpoint(folder: Path, layers: int = LAYERS, vocab: int = V) -> tuple[int, int]:
    """Sharded float32 checkpoint of random tensors, one shard in memory at a time.
    Size: ~0.19 GB per layer + 2 x vocab x 8 KiB (embeddings and head; 0.52 GB at the default vocab).
    Returns (total bytes, largest tensor bytes)."""
    folder.mkdir()
    config = dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=vocab, hidden_size=D, intermediate_size=F,
        num_hidden_layers=layers, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    (folder / "config.json").write_text(json.dumps(config))
    shards = [{"model.embed_tokens.weight": (vocab, D)}, *(_layer_shapes(i) for i in range(layers)),
              {"model.norm.weight": (D,), "lm_head.weight": (vocab, D)}]
    weight_map, total, largest = {}, 0, 0
    for j, shapes in enumerate(shards):
        name = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
        rng = np.random.default_rng(j)
        tensors = {k: rng.random(s, dtype=np.float32) for k, s in shapes.items()}
        total += sum(t.nbytes for t in tensors.values())
        largest = max(largest, *(t.nbytes for t in tensors.values()))
        save_file(tensors, folder / name)
        del tensors
        weight_map.update(dict.fromkeys(shapes, name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return total, largest


_MEASURE = textwrap.dedent(
    """
    import json, sys, time

    def status_bytes(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    import convert, convert.checkpoint, models.config, models.params, tqdm.auto
    from transformers import CONFIG_MAPPING  # load_config parses through it: a fixed import cost
    from orbax.checkpoint.experimental import v1
    baseline = status_bytes("VmRSS")
    start = time.perf_counter()
    convert.convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
    print(json.dumps({"baseline": baseline, "peak": status_bytes("VmHWM"), "seconds": time.perf_counter() - start}))
    """
)


@pytest.mark.slow
def test_peak_memory_of_converting_a_1gb_checkpoint(tmp_path):
    try:
        total, largest = write_big_checkpoint(tmp_path / "hf")
        assert total >= 1_000_000_000
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(tmp_path / "hf"), str(tmp_path / "out")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        over_baseline = figures["peak"] - figures["baseline"]
        budget = 1.5 * largest + (1 << 30)
        print(
            f"\nconverted {total / 2**30:.2f} GiB (largest tensor {largest / 2**20:.0f} MiB) in "
            f"{figures['seconds']:.1f} s; peak RSS {over_baseline / 2**20:.0f} MiB over the interpreter baseline "
            f"(budget {budget / 2**20:.0f} MiB)"
        )
        assert over_baseline <= budget
        assert over_baseline < 0.75 * total, "conversion holds most of the model in memory: not streaming"
        assert (tmp_path / "out" / "conversion.json").is_file()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
