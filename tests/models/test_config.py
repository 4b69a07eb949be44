"""Config parsing: the Hub's flat transformers-4 layout and the nested transformers-5 layout."""

from __future__ import annotations

import dataclasses
import json

import pytest

from models.config import SUPPORTED_MODEL_TYPES, load_config

# Abridged from the published config.json files (fields as the Hub has them).
QWEN2_VL_7B_HUB = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "vocab_size": 152064,
    "max_position_embeddings": 32768, "tie_word_embeddings": False, "hidden_act": "silu",
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
    "image_token_id": 151655, "video_token_id": 151656, "eos_token_id": 151645,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                      "temporal_patch_size": 2},
}
QWEN2_5_VL_7B_HUB = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "vocab_size": 152064,
    "max_position_embeddings": 128000, "tie_word_embeddings": False, "image_token_id": 151655,
    "video_token_id": 151656, "vision_start_token_id": 151652, "eos_token_id": 151645,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2},
}
QWEN3_VL_8B_HUB = {
    "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "tie_word_embeddings": False,
    "text_config": {"model_type": "qwen3_vl_text", "hidden_size": 4096, "intermediate_size": 12288,
                    "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                    "head_dim": 128, "rms_norm_eps": 1e-06, "rope_theta": 5000000, "vocab_size": 151936,
                    "max_position_embeddings": 262144, "eos_token_id": 151645,
                    "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20],
                                     "rope_type": "default"}},
    "vision_config": {"model_type": "qwen3_vl", "depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                      "num_heads": 16, "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2,
                      "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24],
                      "out_hidden_size": 4096, "hidden_act": "gelu_pytorch_tanh", "in_channels": 3},
}
LLAVA_NEXT_8B_HUB = {
    "architectures": ["LlavaNextForConditionalGeneration"], "model_type": "llava_next",
    "image_token_index": 128256, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "projector_hidden_act": "gelu", "use_image_newline_parameter": True,
    "text_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
                    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 128320,
                    "max_position_embeddings": 8192, "eos_token_id": 128009},
    "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "image_size": 336,
                      "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
}
LLAVA_MISTRAL_HUB = {  # text_config lists only what differs from MistralConfig's defaults
    "model_type": "llava_next", "image_token_index": 32000,
    "text_config": {"model_type": "mistral", "intermediate_size": 14336, "max_position_embeddings": 32768,
                    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                    "sliding_window": None, "vocab_size": 32064},
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14},
}


def test_qwen2_vl_flat_hub_layout():
    c = load_config(QWEN2_VL_7B_HUB)
    t = c.text
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (3584, 28, 28, 4)
    assert (t.head_dim, t.rope_kind, t.mrope_section, t.rope_theta) == (128, "mrope", (16, 24, 24), 1e6)
    assert t.qkv_bias and not t.o_bias and not t.qk_norm and not t.tie_word_embeddings
    assert (c.image_token_id, c.video_token_id, c.vision_start_token_id) == (151655, 151656, 151652)
    assert c.eos_token_id == (151645,) and c.is_multimodal and c.vision is not None


def test_qwen2_5_vl_flat_hub_layout():
    c = load_config(QWEN2_5_VL_7B_HUB)
    assert (c.text.rope_kind, c.text.mrope_section, c.text.qkv_bias) == ("mrope", (16, 24, 24), True)
    assert c.vision is not None


def test_qwen3_vl_nested_layout_interleaved_mrope():
    c = load_config(QWEN3_VL_8B_HUB)
    t = c.text
    assert (t.hidden_size, t.num_hidden_layers, t.head_dim, t.intermediate_size) == (4096, 36, 128, 12288)
    assert (t.rope_kind, t.mrope_section, t.rope_theta) == ("mrope_interleaved", (24, 20, 20), 5e6)
    assert t.qk_norm and not t.qkv_bias and not t.o_bias
    assert c.image_token_id == 151655


def test_llava_next_llama3_layout():
    c = load_config(LLAVA_NEXT_8B_HUB)
    t = c.text
    assert (t.vocab_size, t.hidden_size, t.num_key_value_heads, t.head_dim) == (128320, 4096, 8, 128)
    assert (t.rope_kind, t.rope_theta, t.rms_norm_eps) == ("default", 5e5, 1e-5)
    assert not t.qkv_bias and not t.qk_norm
    assert c.image_token_id == 128256 and c.eos_token_id == (128009,)


def test_llava_next_mistral_takes_family_defaults():
    c = load_config(LLAVA_MISTRAL_HUB)
    t = c.text
    # hidden size, layers, heads come from MistralConfig's defaults (absent from the Hub file)
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (4096, 32, 32, 8)
    assert (t.vocab_size, t.intermediate_size, t.rope_theta) == (32064, 14336, 1e6)


def test_llama3_rope_scaling_both_layouts():
    flat = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
            "intermediate_size": 128, "vocab_size": 10, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    nested = {k: v for k, v in flat.items() if k not in ("rope_theta", "rope_scaling")}
    nested["rope_parameters"] = dict(flat["rope_scaling"], rope_theta=500000.0)
    for raw in (flat, nested):
        t = load_config(raw).text
        assert (t.rope_kind, t.rope_factor, t.rope_original_max_position, t.rope_theta) == (
            "llama3", 8.0, 8192, 5e5)


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl", "llava_next"])
def test_transformers5_saved_config_equals_parsed_in_memory(model_type, tmp_path):
    """save_pretrained's nested layout parses to the same dataclass as the dict it came from."""
    from transformers import AutoConfig

    raw = {"qwen2_vl": QWEN2_VL_7B_HUB, "qwen3_vl": QWEN3_VL_8B_HUB, "llava_next": LLAVA_NEXT_8B_HUB}[model_type]
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures")}
    AutoConfig.for_model(model_type, **fields).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "text_config" in saved
    assert load_config(tmp_path) == load_config(raw)


def test_config_is_frozen_and_hashable():
    c = load_config(QWEN3_VL_8B_HUB)
    hash(c.text)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.text.hidden_size = 1  # type: ignore[misc]


def test_unknown_model_type_lists_supported(tmp_path):
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'.*llava_next"):
        load_config({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="unsupported model_type None"):
        load_config({})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(tmp_path)
    assert set(SUPPORTED_MODEL_TYPES) == {"llama", "mistral", "qwen2", "qwen3", "llava_next", "qwen2_vl",
                                           "qwen2_5_vl", "qwen3_vl"}


def test_inconsistent_config_is_rejected():
    bad = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3,
           "num_hidden_layers": 1, "intermediate_size": 8, "vocab_size": 10}
    with pytest.raises(ValueError, match="not a multiple of num_key_value_heads"):
        load_config(bad)
