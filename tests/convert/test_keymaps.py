"""Key maps: every tensor of every supported family maps, in every layout, to one param."""

from __future__ import annotations

import hashlib

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file

from convert.keymaps import SUPPORTED_MODEL_TYPES, keymap_for
from convert.rules import TRANSFORMS, KeyMap, Rule
from tests.convert.tiny import TEXT_ONLY, hf_multimodal_model, hf_text_model, save

MULTIMODAL = ("llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


@pytest.mark.parametrize("model_type", TEXT_ONLY + MULTIMODAL)
def test_disk_and_memory_layouts_map_to_the_same_params(model_type, tmp_path):
    """On-disk names (save_pretrained = the Hub's layout) and transformers-5 in-memory
    names of the same tensor must land on the same Flax path; no tensor is left out."""
    model = hf_text_model(model_type) if model_type in TEXT_ONLY else hf_multimodal_model(model_type)
    save(model, tmp_path)
    on_disk = load_file(tmp_path / "model.safetensors")
    in_memory = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    keymap = keymap_for(model_type)

    disk_target = {}
    for key, value in on_disk.items():
        match = keymap.match(key)
        assert match is not None and match.target is not None, f"{model_type}: no rule for on-disk key {key}"
        disk_target[_digest(value)] = (key, match.target)
    assert len({t for _, t in disk_target.values()}) == len(on_disk), "two tensors map to one param"

    for key, value in in_memory.items():
        match = keymap.match(key)
        assert match is not None and match.target is not None, f"{model_type}: no rule for in-memory key {key}"
        disk_key, target = disk_target[_digest(value)]
        assert match.target == target, f"{key} -> {match.target} but on disk {disk_key} -> {target}"

    text_root = "language_model/" if model_type in MULTIMODAL else ""
    text_targets = {t for _, t in disk_target.values() if t.startswith(text_root + "layers/")}
    assert text_root + "layers/1/mlp/down_proj/kernel" in text_targets
    assert text_root + "lm_head/kernel" in {t for _, t in disk_target.values()}


@pytest.mark.parametrize(
    "model_type, hub_key, target",
    [
        ("llava_next", "language_model.model.layers.3.self_attn.q_proj.weight", "language_model/layers/3/self_attn/q_proj/kernel"),
        ("llava_next", "language_model.lm_head.weight", "language_model/lm_head/kernel"),
        ("llava_next", "model.language_model.norm.weight", "language_model/norm/scale"),
        ("qwen2_vl", "model.layers.0.self_attn.k_proj.bias", "language_model/layers/0/self_attn/k_proj/bias"),
        ("qwen2_5_vl", "model.language_model.embed_tokens.weight", "language_model/embed_tokens/embedding"),
        ("qwen3_vl", "model.language_model.layers.11.self_attn.q_norm.weight", "language_model/layers/11/self_attn/q_norm/scale"),
        ("qwen3", "model.layers.2.self_attn.k_norm.weight", "layers/2/self_attn/k_norm/scale"),
        ("mistral", "model.layers.10.mlp.gate_proj.weight", "layers/10/mlp/gate_proj/kernel"),
        ("llama", "lm_head.weight", "lm_head/kernel"),
    ],
)
def test_hub_names(model_type, hub_key, target):
    assert keymap_for(model_type).match(hub_key).target == target


@pytest.mark.parametrize(
    "model_type, key",
    [
        ("llama", "language_model.model.layers.0.mlp.up_proj.weight"),  # multimodal layout in a text model
        ("llama", "model.layers.0.self_attn.q_norm.weight"),  # Qwen3-only tensor
        ("qwen2", "model.layers.0.self_attn.o_proj.bias"),  # Qwen2 has no o_proj bias
        ("qwen2", "model.layers.x.mlp.up_proj.weight"),
        ("qwen3", "model.layers.0.mlp.up_proj.weight.extra"),  # full match only
    ],
)
def test_foreign_names_have_no_rule(model_type, key):
    assert keymap_for(model_type).match(key) is None


def test_stale_rotary_buffers_are_dropped_on_purpose():
    match = keymap_for("llama").match("model.layers.0.self_attn.rotary_emb.inv_freq")
    assert match is not None and match.target is None


def test_unknown_model_type_names_the_supported_ones():
    with pytest.raises(ValueError, match="gpt2") as info:
        keymap_for("gpt2")
    for model_type in SUPPORTED_MODEL_TYPES:
        assert model_type in str(info.value)


def test_rule_rejects_unknown_transform_and_first_match_wins():
    with pytest.raises(ValueError, match="transpose_please"):
        Rule(r"a", "b", "transpose_please")
    keymap = KeyMap([Rule(r"w\.(?P<i>\d+)", "first/{i}"), Rule(r"w\.\d+", "second")])
    assert keymap.match("w.7").target == "first/7"
    assert keymap.match("w.7x") is None


def test_transforms_cast_and_permute_in_one_pass():
    x = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7).astype(ml_dtypes.bfloat16)
    out = TRANSFORMS["linear"].apply(x[0], np.dtype(np.float32))
    np.testing.assert_array_equal(out, x[0].astype(np.float32).T)
    assert out.flags.c_contiguous and out.dtype == np.float32
    conv = np.random.default_rng(0).standard_normal((5, 3, 2, 2)).astype(np.float32)  # [O, I, H, W]
    np.testing.assert_array_equal(TRANSFORMS["conv2d"].apply(conv, conv.dtype), conv.transpose(2, 3, 1, 0))
    assert TRANSFORMS["conv2d"].out_shape((5, 3, 2, 2)) == (2, 2, 3, 5)
    same = np.ones(3, np.float32)
    assert TRANSFORMS["none"].apply(same, same.dtype) is same  # no copy when nothing changes
    with pytest.raises(ValueError, match="2-D"):
        TRANSFORMS["linear"].out_shape((3,))
