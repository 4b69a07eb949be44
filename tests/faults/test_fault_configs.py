"""Fault injection for `models.load` / `convert_checkpoint` on a copy of a tiny folder with a mutated config.json.

Outcome class (a): a ValueError / FileNotFoundError whose message names config.json (or the folder when it is missing).
"""

from __future__ import annotations

import json
import shutil

import pytest

import models
from convert import convert_checkpoint
from jax_pruning.demo import ASSETS

FOLDERS = ["tiny_qwen2_vl", "tiny_llava_next"]


@pytest.fixture(params=FOLDERS)
def folder(request, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(ASSETS / request.param, copy)
    return copy


def _both_refuse(folder, tmp_path, pattern, error=ValueError):
    with pytest.raises(error, match=pattern):
        models.load(folder)
    with pytest.raises(error, match=pattern):
        convert_checkpoint(folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _mutate(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_config_names_the_folder(folder, tmp_path):
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=str(folder)):
        models.load(folder)
    with pytest.raises(FileNotFoundError, match=rf"{folder}: no config.json"):
        convert_checkpoint(folder, tmp_path / "out", progress=False)


@pytest.mark.parametrize("content", ["", "{bad", "3", "null", "1.5", "true"])
def test_unparsable_or_scalar_config(folder, tmp_path, content):
    (folder / "config.json").write_text(content)
    _both_refuse(folder, tmp_path, "config.json")


def test_missing_model_type(folder, tmp_path):
    _mutate(folder, lambda c: c.pop("model_type"))
    _both_refuse(folder, tmp_path, "config.json: .*without model_type")


def test_model_type_of_another_family(folder, tmp_path):
    other = "llava_next" if "qwen" in (folder / "config.json").read_text() else "qwen2_vl"
    _mutate(folder, lambda c: c.__setitem__("model_type", other))
    _both_refuse(folder, tmp_path, rf"config.json: .*model_type '{other}'")


def test_model_type_of_a_sibling_version(folder, tmp_path):
    """Relabelled qwen2_5_vl, a 2-block tower whose default full-attention blocks (7, 15, 23, 31) do not
    exist: HF ignores them, we too, with a warning. LLaVA's config then fails to parse (its M-RoPE
    sections cannot split the head); Qwen2-VL's parses, as in HF, and its Qwen2-VL weights are refused."""
    qwen = "qwen" in (folder / "config.json").read_text()
    _mutate(folder, lambda c: c.__setitem__("model_type", "qwen2_5_vl"))
    refusal = (r"does not match the model's parameters(.|\n)*check that config.json describes" if qwen
               else r"config.json: .*model_type 'qwen2_5_vl'")
    with pytest.warns(UserWarning, match=r"fullatt_block_indexes \[7, 15, 23, 31\] .* ignored"):
        _both_refuse(folder, tmp_path, refusal)


@pytest.mark.parametrize("key,value", [("num_hidden_layers", [3]), ("num_hidden_layers", 2.5),
                                       ("num_hidden_layers", True), ("num_hidden_layers", "three"),
                                       ("hidden_size", "64"), ("hidden_size", None), ("rms_norm_eps", "x")])
def test_text_field_of_the_wrong_type(folder, tmp_path, key, value):
    _mutate(folder, lambda c: c.get("text_config", c).__setitem__(key, value))
    _both_refuse(folder, tmp_path, rf"config.json: cannot parse config .*{key}")


def test_vision_config_not_an_object(folder, tmp_path):
    _mutate(folder, lambda c: c.__setitem__("vision_config", "x"))
    _both_refuse(folder, tmp_path, r"config.json: cannot parse config .*vision_config")


def test_negative_layer_count_on_qwen(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(ASSETS / "tiny_qwen2_vl", copy)
    for layers in (-1, 0):
        _mutate(copy, lambda c: c.get("text_config", c).__setitem__("num_hidden_layers", layers))
        _both_refuse(copy, tmp_path, r"config.json: cannot parse config")
