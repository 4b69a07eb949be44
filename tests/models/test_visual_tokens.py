"""The shared visual-token map: packing, padding conventions, errors, jit-friendliness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.visual_tokens import (
    KIND_BASE,
    KIND_NEWLINE,
    KIND_TILE,
    ImageTokens,
    images_per_sample,
    pack_visual_tokens,
)


def _image(n_base: int, tile_rows: int = 0, tile_cols: int = 0) -> ImageTokens:
    tiles = tile_rows * (tile_cols + 1)
    kind = np.array([KIND_BASE] * n_base + [KIND_TILE if (i % (tile_cols + 1)) < tile_cols else KIND_NEWLINE
                                            for i in range(tiles)])
    row = np.concatenate([np.arange(n_base) // 2, np.arange(tiles) // (tile_cols + 1)])
    col = np.concatenate([np.arange(n_base) % 2, np.arange(tiles) % (tile_cols + 1)])
    return ImageTokens(kind, row, col, base_grid=(n_base // 2, 2), tile_grid=(tile_rows, tile_cols))


def test_pack_places_images_in_order_and_pads():
    images = [_image(4, 1, 2), _image(2), _image(4)]
    positions = [np.array([1, 2, 3, 4, 6, 7, 8, 10, 11]), np.array([0, 1, 2, 3])]
    tokens, starts = pack_visual_tokens(images, [2, 1], positions, capacity=12, max_images=3)
    np.testing.assert_array_equal(starts, [0, 7, 0])
    np.testing.assert_array_equal(tokens.num_tokens, [9, 4])
    np.testing.assert_array_equal(tokens.index[0, :9], positions[0])
    np.testing.assert_array_equal(tokens.image[0], [0] * 7 + [1] * 2 + [-1] * 3)
    np.testing.assert_array_equal(tokens.kind[0, :7], [0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(tokens.grid_rows[0], [[2, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(tokens.grid_cols[0], [[2, 2], [2, 0], [0, 0]])
    np.testing.assert_array_equal(tokens.frames, [[1, 1, 0], [1, 0, 0]])
    pad = ~tokens.valid
    assert (tokens.index[pad] == 0).all() and (tokens.row[pad] == -1).all() and (tokens.image[pad] == -1).all()
    assert tokens.kind.dtype == np.int8 and tokens.index.dtype == np.int32


def test_pack_without_positions_numbers_slots_and_handles_no_images():
    tokens, _ = pack_visual_tokens([_image(2)], [1])
    np.testing.assert_array_equal(tokens.index, [[0, 1]])
    empty, _ = pack_visual_tokens([], [0, 0], [np.array([], int)] * 2)
    assert empty.index.shape == (2, 1) and not empty.valid.any()


def test_tokens_are_a_pytree_usable_under_jit():
    tokens, _ = pack_visual_tokens([_image(4, 1, 2), _image(2)], [1, 1], capacity=8)

    @jax.jit
    def count_tiles(t):
        return jnp.sum(t.valid & (t.kind == KIND_TILE), axis=1)

    np.testing.assert_array_equal(count_tiles(tokens), [2, 0])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="sum to 1 but 2 images"):
        pack_visual_tokens([_image(2), _image(2)], [1])
    with pytest.raises(ValueError, match="capacity 3 is smaller than the 4"):
        pack_visual_tokens([_image(4)], [1], capacity=3)
    with pytest.raises(ValueError, match="max_images 1 is smaller than the 2"):
        pack_visual_tokens([_image(2), _image(2)], [2], max_images=1)
    with pytest.raises(ValueError, match="sample 0: 3 image-token positions for 2"):
        pack_visual_tokens([_image(2)], [1], [np.arange(3)])
    ids = np.array([[7, 9, 9, 9, 9], [9, 9, 1, 1, 1]])
    assert images_per_sample(ids, 9, [2, 2, 2]) == [2, 1]
    with pytest.raises(ValueError, match="sample 0 has 4 image tokens, but its images give 5"):
        images_per_sample(ids, 9, [2, 3, 2])
    with pytest.raises(ValueError, match="1 image\\(s\\) left without image tokens"):
        images_per_sample(ids, 9, [2, 2, 2, 2])
    with pytest.raises(ValueError, match="expected \\[batch, seq\\]"):
        images_per_sample(ids[0], 9, [2])
