"""models.load: HF folder (converted in memory) or converted folder -> model; logits equal HF's."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx

import models
from convert import convert_checkpoint
from tests.convert.reference import assert_same_params, reference_text_params
from tests.convert.tiny import TEXT, hf_text_model, save, state_dict_np


def model_params(model) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(var[...]) for path, var in flat}


def _files_under(folder):
    return sorted(str(p) for p in folder.rglob("*"))


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "mistral"])
def test_logits_match_hf_through_the_converter(model_type, tmp_path):
    hf = hf_text_model(model_type, seed=5)
    out = convert_checkpoint(save(hf, tmp_path / "hf"), tmp_path / "out", progress=False)
    model = models.load(out)
    assert model.config.model_type == model_type

    ids = np.random.default_rng(0).integers(0, TEXT["vocab_size"], size=(2, 11))
    mask = np.ones_like(ids)
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    got = np.asarray(model(input_ids=ids, attention_mask=mask))
    assert got.shape == want.shape and got.dtype == np.float32
    err = np.abs(got - want).max()
    assert err <= 1e-4, f"{model_type}: max-abs logits error {err:.2e}"


def test_hf_folder_and_converted_folder_load_the_same_params(tmp_path):
    hf = hf_text_model("qwen2", seed=7)
    hf_dir = save(hf, tmp_path / "hf", max_shard_size="20KB")
    before = _files_under(tmp_path)
    from_hf = models.load(hf_dir)
    assert _files_under(tmp_path) == before, "loading an HF folder must not write files"
    out = convert_checkpoint(hf_dir, tmp_path / "out", progress=False)
    want = reference_text_params(state_dict_np(hf))
    assert_same_params(model_params(from_hf), want)
    assert_same_params(model_params(models.load(out)), want)
    assert from_hf.config == models.load(out).config


def test_dtype_casts(tmp_path):
    hf = hf_text_model("llama", seed=8)
    hf_dir = save(hf, tmp_path / "hf")
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in reference_text_params(state_dict_np(hf)).items()}
    assert_same_params(model_params(models.load(hf_dir, dtype="bfloat16")), bf16)
    out = convert_checkpoint(hf_dir, tmp_path / "out", dtype="bfloat16", progress=False)
    assert_same_params(model_params(models.load(out)), bf16)  # None keeps the saved dtype
    upcast = {k: v.astype(np.float32) for k, v in bf16.items()}
    assert_same_params(model_params(models.load(out, dtype="float32")), upcast)
    with pytest.raises(ValueError, match="dtype must be one of"):
        models.load(out, dtype="int8")


def test_load_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        models.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="neither a converted folder"):
        models.load(tmp_path)
