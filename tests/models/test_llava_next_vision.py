"""LLaVA-NeXT image side vs HF transformers (tiny random, float32).

Images of several sizes and aspect ratios go through the real HF processor in
one batch; our packed features (projector, anyres tiles, unpad, newlines, base
first) are compared with HF `get_image_features` (which packs). Also: the
host-side grid/unpad arithmetic against HF's own helpers and the processor's
token count, the pruner structure (kind/row/col/position), several images per
sample, and clear errors on bad inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.llava_layout import (
    image_grid,
    max_tokens_per_image,
    plan_layout,
    select_best_resolution,
)
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE
from tests.models import llava_tiny as lt

torch.set_num_threads(1)
TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    hf = lt.hf_model(seed=1)
    encoder = lt.flax_image_encoder(hf)
    proc = lt.processor()
    images = lt.test_images()
    batch = proc(images=images, text=["w1 <image> w2"] * len(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = hf.model.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output
    return hf, encoder, proc, batch, [r.numpy() for r in ref]


def test_packed_features_match_hf_for_mixed_sizes_in_one_batch(setup):
    hf, encoder, _, batch, ref = setup
    sizes = batch["image_sizes"].numpy()
    assert len({len(r) for r in ref}) == len(ref)  # every image gives a different token count
    capacity = max(len(r) for r in ref) + 7  # padded slots must stay zero and not disturb real ones
    feats, layout = encoder.image_features(batch["pixel_values"].numpy(), sizes, capacity=capacity)
    feats = np.asarray(feats)
    assert feats.shape == (len(ref), capacity, lt.TEXT_HIDDEN)
    errors = []
    for i, r in enumerate(ref):
        n = int(layout.tokens.valid[i].sum())
        assert n == len(r), f"image {i} {sizes[i]}: {n} tokens, HF {len(r)}"
        errors.append(float(np.abs(feats[i, :n] - r).max()))
        assert np.all(feats[i, n:] == 0)
    assert max(errors) <= TOL, f"per-image max-abs errors {errors}"
    # newline slots carry image_newline, a non-trivial vector
    newline = hf.model.image_newline.detach().numpy()
    assert np.abs(newline).max() > 1e-2
    newline_slots = feats[layout.tokens.valid & (layout.tokens.kind == KIND_NEWLINE)]
    assert len(newline_slots) == int(layout.tokens.grid_rows[:, 0, 1].sum())
    np.testing.assert_allclose(newline_slots, np.broadcast_to(newline, newline_slots.shape), atol=1e-6)


def test_stacked_4d_pixel_values_match(setup):
    _, encoder, _, batch, ref = setup
    pixels, sizes = batch["pixel_values"].numpy(), batch["image_sizes"].numpy()
    crops = [image_grid(s, encoder.vision_config).num_crops for s in sizes.tolist()]
    stacked = np.concatenate([p[:n] for p, n in zip(pixels, crops)])
    feats, layout = encoder.image_features(stacked, sizes)
    for i, r in enumerate(ref):
        assert np.abs(np.asarray(feats)[i, : len(r)] - r).max() <= TOL


def test_several_feature_layers_match_hf():
    hf = lt.hf_model(seed=2, vision_feature_layer=[-2, 0])
    encoder = lt.flax_image_encoder(hf)
    images = lt.test_images(("wide_2to1", "tiny"))
    batch = lt.processor()(images=images, text=["<image>"] * 2, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = hf.model.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output
    feats, _ = encoder.image_features(batch["pixel_values"].numpy(), batch["image_sizes"].numpy())
    for i, r in enumerate(ref):
        assert np.abs(np.asarray(feats)[i, : len(r)] - r.numpy()).max() <= TOL


def test_structure_for_pruners(setup):
    """kind/row/col rebuild HF's layout: base g x g grid first, then rows x (cols + 1) with the newline last."""
    _, encoder, _, batch, ref = setup
    sizes = batch["image_sizes"].numpy()
    feats, layout = encoder.image_features(batch["pixel_values"].numpy(), sizes)
    g = layout.base_side
    assert g == lt.CROP // lt.PATCH
    tok = layout.tokens
    for i, r in enumerate(ref):
        valid = tok.valid[i]
        kind = np.where(valid, tok.kind[i], -1)
        row, col = tok.row[i], tok.col[i]
        rows, cols = int(tok.grid_rows[i, 0, 1]), int(tok.grid_cols[i, 0, 1])
        assert (tok.grid_rows[i, 0, 0], tok.grid_cols[i, 0, 0]) == (g, g) and tok.frames[i, 0] == 1
        assert (kind == KIND_BASE).sum() == g * g and (kind == KIND_NEWLINE).sum() == rows
        assert (kind == KIND_TILE).sum() == rows * cols and valid.sum() == len(r)
        # base: row-major g x g
        base = kind == KIND_BASE
        np.testing.assert_array_equal(row[base] * g + col[base], np.arange(g * g))
        # tiles and newlines: HF's [rows, cols + 1] grid, row-major, newline in the last column
        grid = r[g * g :].reshape(rows, cols + 1, -1)
        tile = kind == KIND_TILE
        assert np.abs(np.asarray(feats)[i][tile] - grid[row[tile], col[tile]]).max() <= TOL
        assert np.all(col[kind == KIND_NEWLINE] == cols) and np.all(row[~valid] == -1)
        assert np.all(tok.image[i][valid] == 0) and layout.image_sample[i] == i  # one image per row here

    # jittable selection of MR-Pruner's low (base) and high (tile) tokens without host bookkeeping
    @jax.jit
    def low_high(features, kind):
        low = jnp.nonzero(kind == KIND_BASE, size=g * g)[0]
        high, = jnp.nonzero(kind == KIND_TILE, size=kind.shape[0], fill_value=-1)
        return features[low], high

    kind = jnp.where(jnp.asarray(tok.valid), jnp.asarray(tok.kind), -1)
    low, high = jax.vmap(low_high)(feats, kind)
    np.testing.assert_array_equal(np.asarray(low[0]), np.asarray(feats)[0, : g * g])
    assert int((np.asarray(high[0]) >= 0).sum()) == int(tok.grid_rows[0, 0, 1] * tok.grid_cols[0, 0, 1])


def test_several_images_per_sample_and_positions(setup):
    """Sample 0 has two images, sample 1 one; slots follow the image tokens in prompt order."""
    hf, encoder, proc, _, _ = setup
    images = lt.test_images(("odd", "tall_1to3", "square"))
    batch = proc(images=images, text=["w3 <image> w4 <image> w5", "<image> w6"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = hf.model.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output
    ids = batch["input_ids"].numpy()
    layout = encoder.plan(batch["pixel_values"].numpy(), batch["image_sizes"].numpy(), input_ids=ids,
                          image_token_id=lt.IMAGE_ID)
    feats = np.asarray(encoder.packed_features(jnp.asarray(batch["pixel_values"].numpy()), layout))
    expected = [torch.cat([ref[0], ref[1]]).numpy(), ref[2].numpy()]
    tok = layout.tokens
    for b, e in enumerate(expected):
        n = int(tok.valid[b].sum())
        assert n == len(e) == int((ids[b] == lt.IMAGE_ID).sum())
        assert np.abs(feats[b, :n] - e).max() <= TOL
        np.testing.assert_array_equal(tok.index[b, :n], np.nonzero(ids[b] == lt.IMAGE_ID)[0])
        assert np.all(tok.index[b, n:] == 0) and not tok.valid[b, n:].any()
    np.testing.assert_array_equal(layout.image_sample, [0, 0, 1])
    n0 = len(ref[0])
    np.testing.assert_array_equal(tok.image[0, : len(expected[0])], [0] * n0 + [1] * len(ref[1]))
    assert tok.grid_rows.shape == (2, 2, 2) and tok.frames.tolist() == [[1, 1], [1, 0]]


def test_layout_shapes_do_not_depend_on_image_size():
    """Same pixel shape + capacity -> same array shapes: one compilation for every image size."""
    config = _tiny_config()
    cap = max_tokens_per_image(config)
    shapes = set()
    for size in lt.IMAGE_SIZES.values():
        layout = plan_layout([size], (1, 5, 3, lt.CROP, lt.CROP), config, capacity=cap)
        shapes.add(tuple((a.shape, a.dtype.str) for a in jax.tree.leaves(layout)))
    assert len(shapes) == 1


@given(st.integers(1, 400), st.integers(1, 400))
def test_grid_and_token_count_match_hf_helpers(height, width):
    from transformers.image_processing_utils import select_best_resolution as hf_best
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

    config = _tiny_config()
    grid = image_grid((height, width), config)
    assert select_best_resolution((height, width), config.image_grid_pinpoints) == hf_best((height, width), lt.PINPOINTS)
    assert (grid.crop_rows, grid.crop_cols) == get_anyres_image_grid_shape((height, width), lt.PINPOINTS, lt.CROP)
    g = lt.CROP // lt.PATCH
    full = torch.zeros(1, grid.crop_rows * g, grid.crop_cols * g)
    assert tuple(unpad_image(full, (height, width)).shape[1:]) == (grid.rows, grid.cols)
    want = _PROCESSOR._get_number_of_features(height, width, lt.CROP, lt.CROP) - 1  # "default" drops CLS
    assert grid.num_tokens == want


_PROCESSOR = lt.processor()


def _tiny_config():
    from models.vision_config import parse_vision_config

    return parse_vision_config("llava_next", lt.hf_config().to_dict())


def test_bad_inputs_raise(setup):
    _, encoder, _, batch, _ = setup
    pixels, sizes, ids = batch["pixel_values"].numpy(), batch["image_sizes"].numpy(), batch["input_ids"].numpy()
    with pytest.raises(ValueError, match="image_sizes is required"):
        encoder.image_features(pixels, None)
    with pytest.raises(ValueError, match="pixel_values of shape"):
        encoder.image_features(pixels[0, 0], sizes)
    with pytest.raises(ValueError, match="pixel_values has shape"):
        encoder.image_features(pixels[..., :-1], sizes)
    with pytest.raises(ValueError, match="needs 5"):  # the large image needs 1 + 2x2 crops
        encoder.image_features(pixels[:, :3], sizes)
    with pytest.raises(ValueError, match="holds 6 images but image_sizes has 5"):
        encoder.image_features(pixels, sizes[:5])
    with pytest.raises(ValueError, match=r"image_sizes of shape \(6,\)"):
        encoder.image_features(pixels, sizes[:, 0])
    with pytest.raises(ValueError, match="must be positive"):
        encoder.image_features(pixels, np.where(np.arange(12).reshape(6, 2) == 3, 0, sizes))
    with pytest.raises(ValueError, match="capacity 10 is smaller"):
        encoder.image_features(pixels, sizes, capacity=10)
    bad_ids = ids.copy()
    bad_ids[0, np.nonzero(bad_ids[0] == lt.IMAGE_ID)[0][0]] = 5  # one image token too few in sample 0
    with pytest.raises(ValueError, match="Image features and image tokens do not match: sample 0"):
        encoder.plan(pixels, sizes, input_ids=bad_ids, image_token_id=lt.IMAGE_ID)
    with pytest.raises(ValueError, match="left without image tokens"):
        encoder.plan(pixels, sizes, input_ids=ids[:5], image_token_id=lt.IMAGE_ID)
