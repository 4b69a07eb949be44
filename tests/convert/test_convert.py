"""Conversion: params equal the HF state dict (transposed), in every layout and dtype."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import torch

from convert import convert_checkpoint, main
from convert.checkpoint import MANIFEST, read_manifest, read_params, write_converted
from convert.pipeline import load_hf_params
from tests.convert.reference import assert_same_params, reference_text_params
from tests.convert.tiny import TEXT_ONLY, hf_multimodal_model, hf_text_model, save, state_dict_np


@pytest.mark.parametrize("model_type", TEXT_ONLY)
def test_converted_params_equal_hf_state_dict(model_type, tmp_path):
    model = hf_text_model(model_type)
    hf_dir = save(model, tmp_path / "hf")
    out = convert_checkpoint(hf_dir, tmp_path / "out", progress=False)
    assert_same_params(read_params(out), reference_text_params(state_dict_np(model)))
    assert json.loads((out / "config.json").read_text()) == json.loads((hf_dir / "config.json").read_text())
    assert read_manifest(out)["dtype"] == "float32"
    assert (out / "model_config.json").is_file()
    # generation_config.json (and tokenizer/processor files when present) travel along.
    assert (out / "generation_config.json").read_text() == (hf_dir / "generation_config.json").read_text()


def test_sharded_index_equals_single_file(tmp_path):
    model = hf_text_model("qwen2", seed=3)
    sharded = save(model, tmp_path / "sharded", max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 3
    _, flat = load_hf_params(sharded)
    assert_same_params(flat, reference_text_params(state_dict_np(model)))


def test_tied_embeddings_drop_a_stored_lm_head(tmp_path):
    model = hf_text_model("qwen3", tie_word_embeddings=True)
    hf_dir = save(model, tmp_path / "hf")
    _, flat = load_hf_params(hf_dir)
    want = reference_text_params(state_dict_np(model))
    want.pop("lm_head/kernel", None)
    assert_same_params(flat, want)


def test_bfloat16_output_is_the_exact_cast(tmp_path):
    model = hf_text_model("llama", seed=1)
    out = convert_checkpoint(save(model, tmp_path / "hf"), tmp_path / "out", dtype="bfloat16", progress=False)
    want = {k: v.astype(ml_dtypes.bfloat16) for k, v in reference_text_params(state_dict_np(model)).items()}
    assert_same_params(read_params(out), want)
    assert read_manifest(out)["dtype"] == "bfloat16"


def test_bfloat16_checkpoint_reads_exactly(tmp_path):
    """bf16 on disk (what the Hub ships) -> float32 params equal to torch's own upcast."""
    model = hf_text_model("qwen2", seed=2).to(torch.bfloat16)
    hf_dir = save(model, tmp_path / "hf")
    _, flat = load_hf_params(hf_dir, "float32")
    assert_same_params(flat, reference_text_params(state_dict_np(model)))  # state_dict_np upcasts with torch
    _, flat_bf16 = load_hf_params(hf_dir, "bfloat16")
    assert {v.dtype for v in flat_bf16.values()} == {np.dtype(ml_dtypes.bfloat16)}


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_orbax_round_trip_is_bit_exact(dtype, tmp_path):
    rng = np.random.default_rng(0)
    flat = {
        "embed_tokens/embedding": rng.standard_normal((7, 5)).astype(dtype),
        "layers/0/self_attn/q_proj/kernel": (rng.standard_normal((5, 6)) * 1e-30).astype(dtype),  # subnormals
        "layers/1/self_attn/q_proj/bias": np.array([np.inf, -np.inf, -0.0, 3.0], dtype=dtype),
        "norm/scale": rng.standard_normal(5).astype(dtype),
    }
    config = tmp_path / "config.json"
    config.write_text("{}")
    out = write_converted(tmp_path / "out", iter(flat.items()), config, {}, {"dtype": np.dtype(dtype).name}, group_bytes=64)
    assert_same_params(read_params(out), flat)


def test_multimodal_layouts_convert_identically(tmp_path):
    """LLaVA-NeXT saved by transformers 5 (`language_model.model.layers...`, `vision_tower.encoder...`)
    and the same tensors under the in-memory names (`model.language_model.layers...`) and the Hub's
    CLIP names (`vision_tower.vision_model.encoder...`) give the same params."""
    from safetensors.numpy import load_file, save_file

    from convert.keymaps import keymap_for
    from convert.pipeline import plan_conversion
    from convert.safetensors_io import SafetensorsReader

    model = hf_multimodal_model("llava_next")
    disk = save(model, tmp_path / "disk")
    hub = save(model, tmp_path / "hub")
    tensors = load_file(hub / "model.safetensors")
    renamed = {k.replace("vision_tower.", "vision_tower.vision_model."): v for k, v in tensors.items()}
    (hub / "model.safetensors").unlink()
    save_file(renamed, hub / "model.safetensors")
    memory = save(model, tmp_path / "memory")
    (memory / "model.safetensors").unlink()
    save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, memory / "model.safetensors")

    keymap = keymap_for("llava_next")
    readers = [SafetensorsReader(d) for d in (disk, hub, memory)]
    expected = {}
    for key in readers[0].keys():
        match = keymap.match(key)
        expected[match.target] = match.transform.out_shape(readers[0].tensors[key].shape)
    results = []
    for reader in readers:
        plan = plan_conversion(reader, keymap, expected)
        results.append({p.target: reader.read(p.key) for p in plan})
    assert sorted(results[0]) == sorted(results[1]) == sorted(results[2])
    for path in results[0]:
        np.testing.assert_array_equal(results[0][path], results[1][path])
        np.testing.assert_array_equal(results[0][path], results[2][path])
    assert any(p.startswith("language_model/layers/1/") for p in results[0])
    assert "image_newline" in results[0]


def test_cli_main(tmp_path, capsys):
    hf_dir = save(hf_text_model("mistral"), tmp_path / "hf")
    out = tmp_path / "out"
    assert main([str(hf_dir), str(out), "--dtype", "bfloat16", "--quiet"]) == 0
    assert read_manifest(out)["dtype"] == "bfloat16"
    assert main([str(hf_dir), str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([str(hf_dir), str(out), "--quiet", "--overwrite"]) == 0
    assert read_manifest(out)["dtype"] == "float32"
    assert (out / MANIFEST).is_file() and not list(tmp_path.glob(".out.*"))
