"""Qwen-VL vision towers vs HF transformers (tiny random configs, float32).

Images of several sizes/aspect ratios go through the real HF image processor,
all in one batch; the tower runs padded to static capacities. Also: the
host-side index maps against HF's own `vision_utils`, config parsing in both
layouts, the pruner structure, and clear errors on bad inputs.
"""

import numpy as np
import pytest
import torch
from flax import nnx

from models.qwen_vision import (
    QwenVisionConfig,
    QwenVisionTower,
    build_vision_layout,
    encode_images,
    exact_capacities,
    parse_qwen_vision_config,
    visual_token_structure,
)
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)
TOL = 1e-4


@pytest.fixture(scope="module", params=qt.FAMILIES)
def family_setup(request):
    family = request.param
    hf = qt.hf_vision_tower(family, seed=1)
    config = parse_qwen_vision_config(family, qt.hf_config(family).to_dict())
    tower = QwenVisionTower(config, rngs=nnx.Rngs(0))
    qt.set_params(tower, qt.hf_vision_to_flat(hf.state_dict(), family))
    batch = qt.image_processor(family)(qt.test_images(), return_tensors="np")
    return family, hf, tower, batch["pixel_values"], batch["image_grid_thw"]


def _hf_forward(hf, pixels, grid):
    with torch.no_grad():
        return hf(torch.from_numpy(pixels), grid_thw=torch.from_numpy(grid))


def test_tower_matches_hf_on_mixed_sizes_in_one_batch(family_setup):
    family, hf, tower, pixels, grid = family_setup
    assert len({tuple(g) for g in grid.tolist()}) == len(grid)  # five different grids
    ref = _hf_forward(hf, pixels, grid)
    n_merged = pixels.shape[0] // 4
    exact = exact_capacities(grid, tower.config)
    caps = dict(unit_capacity=exact["unit_capacity"] + 2, unit_patch_capacity=exact["unit_patch_capacity"] + 4 * 7)
    if tower.config.uses_window_attention:  # padded: pads must not disturb real tokens
        caps["unit_window_capacity"] = exact["unit_window_capacity"] + 3
    out = encode_images(tower, pixels, grid, **caps)
    merged, real = np.asarray(out.merged), np.asarray(out.merged_valid)
    assert merged.shape == (caps["unit_capacity"] * caps["unit_patch_capacity"] // 4, tower.config.out_hidden_size)
    err = np.abs(merged[real] - ref.pooler_output.numpy()).max()
    assert err <= TOL, f"{family}: merged max-abs error {err}"
    assert np.all(merged[~real] == 0) and real.sum() == n_merged
    assert np.isfinite(merged).all()
    if family == "qwen3_vl":
        assert len(out.deepstack) == len(ref.deepstack_features) == 2
        for ours, theirs in zip(out.deepstack, ref.deepstack_features):
            err = np.abs(np.asarray(ours)[real] - theirs.numpy()).max()
            assert err <= TOL, f"deepstack max-abs error {err}"
    else:
        assert out.deepstack == ()


def test_single_image_and_reordered_batch(family_setup):
    """Per-image attention: an image's tokens do not depend on its batch neighbours."""
    family, hf, tower, pixels, grid = family_setup
    sizes = np.prod(grid, axis=1)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    caps = dict(unit_patch_capacity=exact_capacities(grid, tower.config)["unit_patch_capacity"])
    alone = encode_images(tower, pixels[starts[1] : starts[2]], grid[1:2], **caps)
    together = encode_images(tower, pixels, grid, **caps)
    lo, hi = starts[1] // 4, starts[2] // 4
    real = lambda out: np.asarray(out.merged)[np.asarray(out.merged_valid)]  # noqa: E731  tokens in image order
    np.testing.assert_allclose(real(alone), real(together)[lo:hi], atol=TOL)


def test_layout_matches_hf_index_maps(family_setup):
    from transformers import vision_utils as vu

    family, hf, tower, pixels, grid = family_setup
    cfg = tower.config
    layout = build_vision_layout(grid, cfg)
    real = layout.patch_valid  # [U, P]: the packed patch order, unit by unit
    tgrid = torch.from_numpy(grid)
    hf_hw = vu.get_vision_position_ids(tgrid, cfg.spatial_merge_size).numpy()
    np.testing.assert_array_equal(layout.rope_hw[real], hf_hw)
    if family == "qwen3_vl":
        idx, w = vu.get_vision_interpolation_indices_and_weights(
            tgrid, cfg.num_grid_per_side, mode="bilinear", align_corners=True, spatial_merge_size=2
        )
        np.testing.assert_array_equal(layout.interp_index[real], idx.numpy())
        np.testing.assert_allclose(layout.interp_weight[real], w.numpy(), atol=1e-7)
    if family == "qwen2_5_vl":
        window_index, cu = vu.get_vision_window_index(tgrid, 2, cfg.window_size, cfg.patch_size)
        order = (window_index.numpy()[:, None] * 4 + np.arange(4)).reshape(-1)  # patch order after reordering
        hf_windows = [sorted(order[a:b].tolist()) for a, b in zip(cu.tolist(), cu.tolist()[1:])]
        starts = np.concatenate([[0], np.cumsum(real.sum(axis=1))])  # unit u's patches start here in packed order
        ours = [
            sorted((start + row[valid]).tolist())
            for start, rows, valids in zip(starts, layout.window_index, layout.window_valid)
            for row, valid in zip(rows, valids)
            if valid.any()
        ]
        assert ours == hf_windows
        assert len(ours) > len(grid)  # several windows per image, so window blocks differ from full ones


def test_bad_inputs_raise_clear_errors(family_setup):
    family, hf, tower, pixels, grid = family_setup
    with pytest.raises(ValueError, match="image_grid_thw is required"):
        encode_images(tower, pixels, None)
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        encode_images(tower, pixels[:, :-1], grid)
    with pytest.raises(ValueError, match="implies"):
        encode_images(tower, pixels[:-4], grid)
    with pytest.raises(ValueError, match=r"shape \[num_images, 3\]"):
        encode_images(tower, pixels, grid[:, :2])
    with pytest.raises(ValueError, match="multiples of spatial_merge_size"):
        encode_images(tower, pixels[: 3 * 4], np.array([[1, 3, 4]]))
    too_small = exact_capacities(grid, tower.config)["unit_patch_capacity"] - 4
    with pytest.raises(ValueError, match="patch_capacity"):
        encode_images(tower, pixels, grid, unit_patch_capacity=too_small)
    with pytest.raises(ValueError, match="required"):
        encode_images(tower, None, grid)
    bad = pixels.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode_images(tower, bad, grid)


HUB_QWEN2_VL = {
    "model_type": "qwen2_vl", "hidden_size": 3584,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                      "temporal_patch_size": 2},
}
HUB_QWEN2_5_VL = {
    "model_type": "qwen2_5_vl",
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
}
HUB_QWEN3_VL = {
    "model_type": "qwen3_vl", "text_config": {"hidden_size": 4096},
    "vision_config": {"deepstack_visual_indexes": [8, 16, 24], "depth": 27, "hidden_act": "gelu_pytorch_tanh",
                      "hidden_size": 1152, "in_channels": 3, "intermediate_size": 4304, "num_heads": 16,
                      "num_position_embeddings": 2304, "out_hidden_size": 4096, "patch_size": 16,
                      "spatial_merge_size": 2, "temporal_patch_size": 2},
}


def test_parse_real_hub_layouts():
    c2 = parse_qwen_vision_config("qwen2_vl", HUB_QWEN2_VL)
    assert (c2.hidden_size, c2.intermediate_size, c2.out_hidden_size, c2.hidden_act) == (1280, 5120, 3584, "quick_gelu")
    assert c2.patch_dim == 3 * 2 * 14 * 14 and not c2.uses_window_attention
    c25 = parse_qwen_vision_config("qwen2_5_vl", HUB_QWEN2_5_VL)
    assert c25.fullatt_block_indexes == (7, 15, 23, 31) and c25.window_merged_side == 4 and c25.uses_window_attention
    assert c25.tokens_per_second == 2
    c3 = parse_qwen_vision_config("qwen3_vl", HUB_QWEN3_VL)
    assert (c3.num_grid_per_side, c3.deepstack_visual_indexes, c3.out_hidden_size) == (48, (8, 16, 24), 4096)
    # transformers-5 nested layout (what save_pretrained writes) parses to the same fields
    for family in qt.FAMILIES:
        cfg = parse_qwen_vision_config(family, qt.hf_config(family).to_dict())
        same = parse_qwen_vision_config(family, qt.hf_config(family).to_dict()["vision_config"])
        assert cfg == same and cfg.depth == 3


def test_parse_rejects_bad_configs():
    with pytest.raises(ValueError, match="not in"):
        parse_qwen_vision_config("llava_next", HUB_QWEN2_VL)
    with pytest.raises(ValueError, match="missing embed_dim"):
        parse_qwen_vision_config("qwen2_vl", {"vision_config": {"depth": 2, "num_heads": 2, "hidden_size": 8}})
    with pytest.raises(ValueError, match="out of range"):
        parse_qwen_vision_config("qwen3_vl", {**HUB_QWEN3_VL, "vision_config": {
            **HUB_QWEN3_VL["vision_config"], "deepstack_visual_indexes": [30]}})
    with pytest.raises(ValueError, match="family"):
        QwenVisionConfig("qwen9", 1, 8, 2, 8, 8, "silu")


def test_visual_token_structure():
    grid = np.array([[1, 4, 6], [1, 2, 2], [2, 6, 4]])
    positions = [np.arange(3, 10), np.arange(20, 32)]
    s = visual_token_structure(grid, [2, 1], spatial_merge_size=2, positions=positions, capacity=14, max_images=3)
    assert s.kind.shape == (2, 14) and s.grid_rows.shape == (2, 3, 2)
    np.testing.assert_array_equal(s.num_tokens, [7, 12])
    np.testing.assert_array_equal(s.grid_rows[0, :2, 0], [2, 1])  # base grid rows = t * h (merged)
    np.testing.assert_array_equal(s.grid_cols[0, :2, 0], [3, 1])
    np.testing.assert_array_equal(s.grid_rows[1, 0], [6, 0])  # t=2, h=3: frames stacked as rows
    np.testing.assert_array_equal(s.frames, [[1, 1, 0], [2, 0, 0]])
    np.testing.assert_array_equal(s.row[0, :7], [0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(s.col[0, :7], [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(s.row[1, :12], np.repeat(np.arange(6), 2))
    np.testing.assert_array_equal(s.image[0], [0] * 6 + [1] + [-1] * 7)
    np.testing.assert_array_equal(s.index[1, :12], np.arange(20, 32))
    np.testing.assert_array_equal(s.valid[0], [True] * 7 + [False] * 7)
    assert (s.kind[s.valid] == 0).all()
    with pytest.raises(ValueError, match="sum to"):
        visual_token_structure(grid, [1, 1], 2)
    with pytest.raises(ValueError, match="capacity"):
        visual_token_structure(grid, [2, 1], 2, capacity=5)
    with pytest.raises(ValueError, match="not divisible"):
        visual_token_structure([[1, 3, 4]], [1], 2)


@pytest.mark.parametrize("family", qt.FAMILIES)
def test_key_map_covers_both_layouts_with_matching_shapes(family):
    from convert.keymaps.vision_qwen import vision_rules
    from convert.rules import KeyMap

    hf = qt.hf_vision_tower(family)
    tower = QwenVisionTower(parse_qwen_vision_config(family, qt.hf_config(family).to_dict()), rngs=nnx.Rngs(0))
    ours = {
        "visual/" + "/".join(map(str, path)): tuple(v.shape)
        for path, v in nnx.iter_graph(tower)
        if isinstance(v, nnx.Param)
    }
    keymap = KeyMap(vision_rules(family))
    for prefix in ("visual.", "model.visual."):  # Hub on-disk / transformers-5 names
        mapped = {}
        for key, tensor in hf.state_dict().items():
            match = keymap.match(prefix + key)
            assert match is not None, prefix + key
            mapped[match.target] = match.transform.out_shape(tuple(tensor.shape))
        assert mapped == ours
    with pytest.raises(ValueError, match="serves"):
        vision_rules("llava_next")


def test_one_compilation_per_capacity(family_setup):
    """Different image sizes, same capacities -> no new compilation of the tower."""
    import logging

    import jax

    family, hf, tower, pixels, grid = family_setup
    proc = qt.image_processor(family)
    first = proc(qt.test_images(("square", "tiny")), return_tensors="np")
    second = proc(qt.test_images(("wide_2to1", "tall_1to3")), return_tensors="np")
    assert first["image_grid_thw"].tolist() != second["image_grid_thw"].tolist()
    caps = dict(unit_capacity=2, unit_patch_capacity=300)
    if tower.config.uses_window_attention:
        caps["unit_window_capacity"] = 12
    compiled = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "Compiling jit(_forward)" in record.getMessage():
                compiled.append(record)

    handler = Catch()
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles(True):
            encode_images(tower, first["pixel_values"], first["image_grid_thw"], **caps)
            assert len(compiled) == 1
            encode_images(tower, second["pixel_values"], second["image_grid_thw"], **caps)
            assert len(compiled) == 1
    finally:
        logging.getLogger("jax").removeHandler(handler)
