"""CLIP vision tower vs HF CLIPVisionModel (tiny random, float32), LLaVA-NeXT vision
config parsing in both layouts, the CLIP key map, and clear errors."""

import numpy as np
import pytest
import torch
from flax import nnx

from convert.keymaps.vision_clip import vision_rules
from convert.rules import KeyMap
from models.clip import ClipVisionTower, select_features
from models.vision_config import (
    ClipVisionConfig,
    LlavaNextVisionConfig,
    parse_clip_vision_config,
    parse_vision_config,
)
from tests.models import llava_tiny as lt

torch.set_num_threads(1)
TOL = 1e-4


def _hf_clip(hidden_act: str, seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    raw = lt.vision_config_dict(hidden_act=hidden_act)
    raw.pop("model_type")
    config = CLIPVisionConfig(**raw)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return lt.randomize_(CLIPVisionModel(config), seed).eval()


def _flax_clip(hf, key_prefix: str) -> ClipVisionTower:
    """Load through the key map, with HF keys spelled under `key_prefix` (a checkpoint layout)."""
    keymap = KeyMap(vision_rules("llava_next"))
    flat = {}
    for key, tensor in hf.state_dict().items():
        match = keymap.match(key_prefix + key)
        assert match is not None, f"no rule for {key_prefix + key}"
        flat[match.target.removeprefix("vision_tower/")] = match.transform.apply(tensor.numpy(), np.float32)
    tower = ClipVisionTower(parse_clip_vision_config(hf.config.to_dict()), rngs=nnx.Rngs(0))
    lt.set_params(tower, flat)
    return tower


@pytest.mark.parametrize(
    "hidden_act,key_prefix",
    [("quick_gelu", "vision_tower.vision_model."), ("gelu", "model.vision_tower."), ("gelu_new", "vision_tower.")],
)
def test_all_hidden_states_match_hf(hidden_act, key_prefix):
    hf = _hf_clip(hidden_act, seed=3)
    tower = _flax_clip(hf, key_prefix)
    pixels = np.random.default_rng(0).normal(size=(3, 3, lt.CROP, lt.CROP)).astype(np.float32)
    with torch.no_grad():
        ref = hf(torch.from_numpy(pixels), output_hidden_states=True).hidden_states
    ours = tower(pixels)
    assert len(ours) == len(ref) == hf.config.num_hidden_layers + 1
    errors = [float(np.abs(np.asarray(o) - r.numpy()).max()) for o, r in zip(ours, ref)]
    assert max(errors) <= TOL, f"{hidden_act}: per-state max-abs errors {errors}"
    # a wrong activation would be caught: the states really depend on it
    assert float(np.abs(ref[-1].numpy() - ref[0].numpy()).max()) > 1e-2


@pytest.mark.parametrize("layers,strategy", [((-2,), "default"), ((-2,), "full"), ((-1, 1, 0), "default")])
def test_feature_selection_matches_hf_indexing(layers, strategy):
    hf = _hf_clip("quick_gelu", seed=4)
    tower = _flax_clip(hf, "vision_tower.")
    pixels = np.random.default_rng(1).normal(size=(2, 3, lt.CROP, lt.CROP)).astype(np.float32)
    with torch.no_grad():
        states = hf(torch.from_numpy(pixels), output_hidden_states=True).hidden_states
    ref = torch.cat([states[i] for i in layers], dim=-1)
    ref = ref[:, 1:] if strategy == "default" else ref
    ours = np.asarray(select_features(tower.hidden_states(pixels, layers), strategy))
    assert ours.shape == tuple(ref.shape)
    assert np.abs(ours - ref.numpy()).max() <= TOL


def test_bad_pixel_values_raise():
    tower = ClipVisionTower(parse_clip_vision_config(lt.vision_config_dict()), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pixel_values has shape"):
        tower(np.zeros((2, 3, lt.CROP, lt.CROP + 5), np.float32))
    with pytest.raises(ValueError, match="pixel_values has shape"):
        tower(np.zeros((3, lt.CROP, lt.CROP), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        tower.hidden_states(np.zeros((1, 3, lt.CROP, lt.CROP), np.float32), (7,))
    with pytest.raises(ValueError, match="select_strategy"):
        select_features((np.zeros((1, 5, 4)),), "cls")


# --- config parsing ---------------------------------------------------------------------------

# The public llama3-llava-next-8b-hf config (vision part), nested transformers-4 layout.
HUB_LLAVA_NEXT_8B = {
    "model_type": "llava_next",
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "image_token_index": 128256,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "text_config": {"model_type": "llama", "hidden_size": 4096},
    "vision_config": {
        "hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
        "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768,
        "vocab_size": 32000,
    },
}


def test_parse_hub_config_defaults_and_derived_sizes():
    config = parse_vision_config("llava_next", HUB_LLAVA_NEXT_8B)
    assert isinstance(config, LlavaNextVisionConfig)
    assert config.tower.hidden_act == "quick_gelu" and config.tower.layer_norm_eps == 1e-5  # CLIP defaults
    assert config.tower.grid_side == 24 and config.tower.num_patches == 576
    assert config.feature_layers == (-2,) and config.resolved_feature_layers == (23,)
    assert config.image_grid_pinpoints[0] == (336, 672) and config.projector_bias
    # no vision_config at all: LlavaNextConfig's default tower (CLIP ViT-L/14-336)
    bare = parse_vision_config("llava_next", {"model_type": "llava_next"})
    assert bare.tower == config.tower and bare.image_grid_pinpoints == config.image_grid_pinpoints


def test_parse_transformers5_layout_matches_hf_config():
    hf_dict = lt.hf_config(vision_feature_layer=[-2, 0]).to_dict()
    config = parse_vision_config("llava_next", hf_dict)
    assert config.feature_layers == (-2, 0) and config.feature_layer_is_list
    assert config.projector_in_features == 2 * 32
    assert config.tower == ClipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=30, patch_size=5
    )
    assert [list(p) for p in config.image_grid_pinpoints] == lt.PINPOINTS


def test_parse_dispatches_qwen_and_rejects_unknown():
    from tests.models import qwen_tiny as qt

    qwen = parse_vision_config("qwen2_vl", qt.hf_config("qwen2_vl").to_dict())
    assert type(qwen).__name__ == "QwenVisionConfig" and qwen.family == "qwen2_vl"
    with pytest.raises(ValueError, match="llama"):
        parse_vision_config("llama", {})


@pytest.mark.parametrize(
    "patch,match",
    [
        ({"vision_feature_select_strategy": "cls"}, "select_strategy"),
        ({"vision_feature_layer": 30}, "out of range"),
        ({"image_grid_pinpoints": [[336, 500]]}, "multiple of the crop size"),
        ({"vision_config": dict(HUB_LLAVA_NEXT_8B["vision_config"], model_type="siglip_vision_model")}, "CLIP"),
        ({"vision_config": dict(HUB_LLAVA_NEXT_8B["vision_config"], patch_size=15)}, "multiple of patch_size"),
        ({"projector_hidden_act": "swish"}, "projector_hidden_act"),
    ],
)
def test_bad_configs_raise(patch, match):
    with pytest.raises(ValueError, match=match):
        parse_vision_config("llava_next", HUB_LLAVA_NEXT_8B | patch)


def test_key_map_layouts_agree():
    keymap = KeyMap(vision_rules("llava_next"))
    suffix = "encoder.layers.3.self_attn.q_proj.weight"
    layouts = ("vision_tower.vision_model.", "vision_tower.", "model.vision_tower.")
    targets = {keymap.match(p + suffix).target for p in layouts}
    assert targets == {"vision_tower/encoder/layers/3/self_attn/q_proj/kernel"}
    assert keymap.match("model.image_newline").target == keymap.match("image_newline").target == "image_newline"
    assert keymap.match("language_model.model.layers.0.mlp.up_proj.weight") is None
    with pytest.raises(ValueError, match="llava_next"):
        vision_rules("qwen2_vl")
