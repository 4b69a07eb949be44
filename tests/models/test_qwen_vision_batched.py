"""The Qwen vision tower batched by attention unit (one frame of one image) equals the packed form.

Reference: the previous algorithm, all patches of the batch as one packed sequence
with a block-diagonal mask (same frame for full blocks, same window for Qwen2.5's
window blocks), written here with dense masks on the tower's own modules. Also:
capacities do not change results, all-padding units stay finite, staging's
bucketed capacities, and time linear in the number of images.
"""

import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_pruning.engine.staging import qwen_capacities
from models.qwen_vision import QwenVisionTower, build_vision_layout, exact_capacities, pad_pixel_values
from models.qwen_vision import parse_qwen_vision_config, unit_grids
from models.qwen_vision.layers import rotary_cos_sin, rotary_inv_freq, unit_attention, window_attention
from models.qwen_vision.layout import _interp_taps, _patch_rows_cols
from models.qwen_vision.tower import _forward
from tests.models import qwen_tiny as qt

GRID = np.array([[1, 16, 16], [2, 8, 12], [1, 4, 6], [1, 12, 20]])  # 5 units of 4 sizes (one image of 2 frames)


def _tower(family: str) -> QwenVisionTower:
    config = parse_qwen_vision_config(family, qt.hf_config(family).to_dict())
    return QwenVisionTower(config, rngs=nnx.Rngs(0))


def _pixels(config, grid=GRID, seed: int = 0) -> np.ndarray:  # [num_patches, C*T*P*P]
    n = int(np.prod(grid, axis=1).sum())
    return np.random.default_rng(seed).normal(size=(n, config.patch_dim)).astype(np.float32)


def _packed_ids(config, grid):
    """Per packed patch: (row, col) [N, 2], frame id [N], window id [N], Qwen3 taps/weights [N, 4]."""
    m, side = config.spatial_merge_size, max(config.window_merged_side, 1)
    hw, frame, window, taps, weights = [], [], [], [], []
    for f, (h, w) in enumerate(unit_grids(grid).tolist()):
        rows, cols = _patch_rows_cols(h, w, m)
        hw.append(np.stack([rows, cols], axis=-1))
        frame.append(np.full(h * w, f))
        window.append(f * 10_000 + (rows // m // side) * 100 + cols // m // side)
        if config.family == "qwen3_vl":
            index, weight = _interp_taps(rows, cols, h, w, config.num_grid_per_side)
            taps.append(index)
            weights.append(weight)
    cat = lambda parts: np.concatenate(parts) if parts else None  # noqa: E731
    return cat(hw), cat(frame), cat(window), cat(taps), cat(weights)


def packed_reference(tower: QwenVisionTower, pixels, grid):
    """The concatenated form: pixels [N, C*T*P*P] -> (merged [N // merge**2, out], deepstack list)."""
    cfg = tower.config
    hw, frame, window, taps, weights = _packed_ids(cfg, grid)
    x = tower.patch_embed(jnp.asarray(pixels))[None]  # [1, N, D]
    if cfg.family == "qwen3_vl":
        table = tower.pos_embed.embedding[...]
        x = x + jnp.sum(table[taps] * weights[..., None], axis=1)[None]
    cos, sin = rotary_cos_sin(jnp.asarray(hw)[None], rotary_inv_freq(cfg))
    deepstack = []
    for i, block in enumerate(tower.blocks):
        windowed = cfg.uses_window_attention and i not in cfg.fullatt_block_indexes
        ids = window if windowed else frame
        mask = jnp.asarray(ids[:, None] == ids[None, :])[None, None]  # [1, 1, N, N]
        q, k, v = block.attn._qkv(block.norm1(x), cos, sin)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=cfg.head_dim**-0.5)
        x = x + block.attn.proj(out.reshape(*x.shape[:-1], -1))
        x = x + block.mlp(block.norm2(x))
        if i in cfg.deepstack_visual_indexes:
            deepstack.append(tower.deepstack_merger_list[cfg.deepstack_visual_indexes.index(i)](x)[0])
    return tower.merger(x)[0], deepstack


def _tower_inputs(config, pixels, grid, **caps):
    """-> (pixel_values [U, P, C*T*P*P], VisionLayout) at the capacities."""
    windows = caps.pop("unit_window_capacity", None)
    layout = build_vision_layout(grid, config, **caps, unit_window_capacity=windows)
    return jnp.asarray(pad_pixel_values(pixels, grid, config, **caps)), layout


def _encode(tower, pixels, grid, **caps):
    """-> (merged [U * Pm, out], deepstack, merged_valid [U * Pm]) as NumPy."""
    out = _forward(tower, *_tower_inputs(tower.config, pixels, grid, **caps))
    return np.asarray(out.merged), [np.asarray(d) for d in out.deepstack], np.asarray(out.merged_valid)


def _padded_caps(config, grid, units=3, patches=8, windows=2) -> dict:
    exact = exact_capacities(grid, config)
    caps = dict(unit_capacity=exact["unit_capacity"] + units,
                unit_patch_capacity=exact["unit_patch_capacity"] + patches)
    if config.uses_window_attention:
        caps["unit_window_capacity"] = exact["unit_window_capacity"] + windows
    return caps


@pytest.mark.parametrize("family", qt.FAMILIES)
def test_batched_tower_equals_the_packed_form(family):
    tower = _tower(family)
    pixels = _pixels(tower.config)
    merged, deepstack, valid = _encode(tower, pixels, GRID, **_padded_caps(tower.config, GRID))
    ref, ref_deepstack = packed_reference(tower, pixels, GRID)
    assert valid.sum() == len(ref) and np.isfinite(merged).all()
    err = np.abs(merged[valid] - np.asarray(ref)).max()
    assert err <= 1e-5, f"{family}: batched vs packed max-abs {err}"
    assert (merged[~valid] == 0).all()
    assert len(deepstack) == len(ref_deepstack) == len(tower.config.deepstack_visual_indexes)
    for ours, theirs in zip(deepstack, ref_deepstack):
        assert np.abs(ours[valid] - np.asarray(theirs)).max() <= 1e-5 and (ours[~valid] == 0).all()


@pytest.mark.parametrize("family", qt.FAMILIES)
def test_capacities_do_not_change_merged_tokens(family):
    tower = _tower(family)
    pixels = _pixels(tower.config, seed=1)
    exact, _, exact_valid = _encode(tower, pixels, GRID)  # exact capacities: U = 5, P = the largest unit
    wide, _, wide_valid = _encode(tower, pixels, GRID, **_padded_caps(tower.config, GRID, units=6, patches=64))
    assert wide.shape[0] > exact.shape[0] and wide_valid.sum() == exact_valid.sum()
    np.testing.assert_allclose(wide[wide_valid], exact[exact_valid], atol=1e-5, rtol=0)


def test_all_padding_units_stay_finite():
    """An all-padding unit's softmax has no key to see: it must still be finite (no NaN, even in gradients)."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 136, 2, 8)), jnp.float32) for _ in range(3))
    valid = jnp.asarray(np.arange(136)[None] < np.array([[100], [0]]))  # unit 1 is all padding
    assert np.isfinite(np.asarray(unit_attention(q, k, v, valid, 0.3))).all()
    index, none = jnp.zeros((3, 16), jnp.int32), jnp.zeros((3, 16), bool)  # windows with no valid slot
    assert np.isfinite(np.asarray(window_attention(q[0], k[0], v[0], index, none, 0.3))).all()

    tower = _tower("qwen2_5_vl")
    grid = GRID[1:3]
    pixels, layout = _tower_inputs(tower.config, _pixels(tower.config, grid), grid, **_padded_caps(tower.config, grid))
    graphdef, state = nnx.split(tower)
    grads = jax.grad(lambda p: nnx.merge(graphdef, state)(p, layout).merged.sum())(pixels)
    assert np.isfinite(np.asarray(grads)).all()


def test_staging_buckets_units_and_patches_per_unit():
    config = parse_qwen_vision_config("qwen2_5_vl", qt.hf_config("qwen2_5_vl").to_dict())
    model = SimpleNamespace(config=SimpleNamespace(image_token_id=qt.IMAGE_ID, vision_start_token_id=None,
                                                   vision=config))
    inputs = dict(input_ids=np.full((1, 8), qt.IMAGE_ID), pixel_values=_pixels(config), image_grid_thw=GRID)
    caps = qwen_capacities(model, inputs)
    exact = exact_capacities(GRID, config)
    assert caps["unit_capacity"] == exact["unit_capacity"] == 5
    assert caps["unit_patch_capacity"] >= exact["unit_patch_capacity"] and caps["unit_patch_capacity"] % 4 == 0
    assert caps["unit_window_capacity"] >= exact["unit_window_capacity"]
    assert qwen_capacities(model, inputs, unit_multiple=4)["unit_capacity"] == 8
    build_vision_layout(GRID, config, **{k: v for k, v in caps.items() if k.startswith("unit_")})  # the caps fit


def test_time_is_linear_in_the_number_of_images():
    """64 images take at most 12x the time of 8 (linear: 8x; the packed form took ~110x)."""
    tower = _tower("qwen2_vl")
    grid = {n: np.array([[1, 16, 16]] * n) for n in (8, 64)}
    args = {n: _tower_inputs(tower.config, _pixels(tower.config, g), g) for n, g in grid.items()}
    run = lambda n: jax.block_until_ready(_forward(tower, *args[n]).merged)  # noqa: E731
    run(8), run(64)  # compile

    def seconds(n: int) -> float:
        start = time.perf_counter()
        run(n)
        return time.perf_counter() - start

    # pairs back to back, so a busy moment of the shared machine hits both sizes; median over pairs
    ratios = [seconds(64) / seconds(8) for _ in range(7)]
    assert np.median(ratios) <= 12, f"64 images / 8 images: {np.round(ratios, 1).tolist()}"
