"""Kept-token overlays: kept cells show the image as it is, dropped cells are greyed and dimmed,
candidates tinted; every figure has its legend and captions; geometry per model family."""

import numpy as np
import pytest
from PIL import Image

from jax_pruning.eval.overlay import (ABSORBED_ALPHA, AMBER, AMBER_ALPHA, CANDIDATE, CAPTION, CYAN, CYAN_ALPHA, DIM,
                                      DIM_TO, DROPPED, GAP, LEGEND, PAD, RETAINED, TITLE, caption, figure, pixel_labels,
                                      render_panel, render_views, save_comparison, save_overlay)
from jax_pruning.eval.token_views import (ABSORBED, KEPT, MERGED, TokenView, decode_views, encode_views, llava_tile_box,
                                          token_views)


def _photo(size=(40, 30), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _grey(pixels):
    return pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_kept_pixels_are_the_image_dropped_are_dimmed_candidates_tinted():
    image = _photo((64, 64))
    labels = np.array([[KEPT, DROPPED], [CANDIDATE, KEPT]], np.int8)
    panel = np.asarray(render_panel(image, TokenView("base", labels), 64)).astype(int)
    original = np.asarray(image).astype(int)  # 64 px panel of a 64 px image: the very same pixels
    np.testing.assert_array_equal(panel[:32, :32], original[:32, :32])  # kept: untouched
    np.testing.assert_array_equal(panel[32:, 32:], original[32:, 32:])
    dropped = original[:32, 32:]
    np.testing.assert_allclose(panel[:32, 32:, 0], DIM * _grey(dropped) + (1 - DIM) * DIM_TO, atol=1)
    assert np.all(panel[:32, 32:, 0] == panel[:32, 32:, 1])  # greyed
    assert panel[:32, 32:].mean() < 0.6 * dropped.mean()  # and dimmed
    cand = original[32:, :32]
    np.testing.assert_allclose(panel[32:, :32], cand * (1 - AMBER_ALPHA) + np.asarray(AMBER) * AMBER_ALPHA, atol=1)


def test_every_figure_has_a_legend_titles_and_captions(tmp_path):
    image = Image.new("RGB", (60, 60), (255, 255, 255))
    base = np.zeros((2, 2), bool)
    base[0, 0] = True
    path = save_overlay(image, tmp_path / "mr.png", keep=[base, np.ones(12, bool)], grids=[(2, 2), (3, 4)],
                        panel_size=60, title="mr_pruner · keep 0.25")
    out = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert out.shape[1] >= 2 * 60 + GAP + 2 * PAD
    assert out.shape[0] == PAD + TITLE + CAPTION + 60 + PAD + LEGEND
    top = PAD + TITLE + CAPTION
    assert tuple(out[top + 10, PAD + 10]) == (255, 255, 255)  # kept base cell: the white image
    assert out[top + 45, PAD + 45].max() < 120  # dropped base cell: dimmed
    assert tuple(out[top + 10, PAD + 60 + GAP + 10]) == (255, 255, 255)  # every tile kept
    legend = out[-PAD - LEGEND:-PAD]
    assert (legend < 100).any() and len(np.unique(legend.reshape(-1, 3), axis=0)) > 20  # swatches and text
    assert (out[PAD:PAD + TITLE] < 128).any() and (out[PAD + TITLE:top] < 128).any()  # title and captions drawn


def test_comparison_has_one_row_per_method(tmp_path):
    image = _photo((50, 50))
    rows = [(f"method {i}", [TokenView("base", np.eye(5, dtype=np.int8))]) for i in range(3)]
    path = save_comparison(tmp_path / "cmp.png", image, rows, panel_size=50)
    height = Image.open(path).height
    assert height == 2 * PAD + 3 * (TITLE + CAPTION + 50) + 2 * GAP + LEGEND
    with pytest.raises(ValueError, match="no rows"):
        figure(image, [])
    with pytest.raises(ValueError, match="no token views"):
        figure(image, [("x", [])])


def test_geometry_original_aspect_for_llava_grid_aspect_for_qwen():
    image = _photo((80, 40))  # wide
    llava = TokenView("tiles", np.ones((2, 4), np.int8))
    assert render_panel(image, llava, 100).size == (100, 50)  # the original image's aspect
    qwen = TokenView("base", np.ones((3, 3), np.int8), aspect=1.0)
    assert render_panel(image, qwen, 100).size == (100, 100)  # the resized image: square cells
    # a box reaching past the image: the cells map onto it, nothing outside the grid is kept
    view = TokenView("tiles", np.array([[KEPT], [DROPPED]], np.int8), (0.0, 0.0, 0.5, 1.0))
    labels = pixel_labels(view, 40, 10)
    assert (labels[:10] == KEPT).all() and (labels[10:20] == DROPPED).all() and (labels[20:] == DROPPED).all()


def test_llava_tile_box_follows_anyres_resize_pad_and_unpad():
    from types import SimpleNamespace

    from jax_pruning.demo import ASSETS
    from models.config import load_config

    vision = load_config(ASSETS / "tiny_llava_next").vision  # crop 32, 8x8 patches of 4 px, pinpoint 64x64
    assert llava_tile_box((64, 64), vision) == (0.0, 0.0, 1.0, 1.0)  # square: no padding, no unpad
    # 30x64: resized 30x64 into 64x64, 17 px padding on top; unpad keeps patch rows 4..11 = canvas y 16..48
    assert llava_tile_box((30, 64), vision) == pytest.approx((-1 / 30, 0.0, 31 / 30, 1.0))
    # LLaVA-NeXT-8B's geometry: 336 px crops of 24x24 patches (14 px)
    big = SimpleNamespace(tower=SimpleNamespace(image_size=336, grid_side=24),
                          image_grid_pinpoints=((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)))
    # 250x640 -> pinpoint 336x672, resized to 263x672, 36 px on top; unpad keeps patch rows 3..20 (y 42..294):
    # a little of the image's top and bottom falls in the rows unpad cut
    assert llava_tile_box((250, 640), big) == pytest.approx((6 / 263, 0.0, 258 / 263, 1.0))
    # 360x640 -> 672x672, resized to 378x672, 147 px on top; rows 10..37 (y 140..532) reach past the image
    assert llava_tile_box((360, 640), big) == pytest.approx((-7 / 378, 0.0, 385 / 378, 1.0))


def test_token_views_from_the_engine_map_and_their_compact_encoding():
    from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE, VisualTokens

    kind = [KIND_BASE] * 4 + [KIND_TILE] * 3 + [KIND_NEWLINE] + [KIND_TILE] * 3 + [KIND_NEWLINE] + [0, 0]
    row = [0, 0, 1, 1] + [0, 0, 0, 0] + [1, 1, 1, 1] + [-1, -1]
    col = [0, 1, 0, 1] + [0, 1, 2, 3] + [0, 1, 2, 3] + [-1, -1]
    arr = lambda x, dt=np.int32: np.asarray([x], dt)  # noqa: E731
    visual = VisualTokens(index=arr(list(range(14))), valid=arr([True] * 12 + [False] * 2, bool),
                          kind=arr(kind, np.int8), row=arr(row), col=arr(col), image=arr([0] * 12 + [-1, -1]),
                          grid_rows=np.array([[[2, 2]]], np.int32), grid_cols=np.array([[[2, 3]]], np.int32),
                          frames=np.array([[1]], np.int32))
    labels = arr([1, 0, 0, 1] + [1, 2, 0, 1] + [0, 0, 1, 1] + [0, 0], np.int8)  # newline slots 7, 11 left out
    views = token_views(visual, labels)
    assert [v.name for v in views] == ["base", "tiles"] and views[0].aspect is None
    np.testing.assert_array_equal(views[0].labels, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(views[1].labels, [[1, 2, 0], [0, 0, 1]])
    back = decode_views(encode_views(views))
    for a, b in zip(views, back):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.box == b.box and a.name == b.name
    assert len(encode_views(views)[1]["labels"]) <= 4  # 6 tokens at 4 bits: 3 bytes, base64
    merged = TokenView("tiles", np.array([[0, 1, 2, 3, 4]], np.int8))
    np.testing.assert_array_equal(decode_views(encode_views([merged]))[0].labels, merged.labels)
    legacy = dict(encode_views([views[1]])[0], labels="ZAA=")  # a record written at 2 bits a token
    del legacy["bits"]
    np.testing.assert_array_equal(decode_views([legacy])[0].labels, [[0, 1, 2], [1, 0, 0]])
    with pytest.raises(ValueError, match="no visual tokens of image 1"):
        token_views(visual, labels, image=1)
    qwen = VisualTokens(index=arr([0, 1, 2, 3, 4, 5]), valid=arr([True] * 6, bool), kind=arr([0] * 6, np.int8),
                        row=arr([0, 0, 0, 1, 1, 1]), col=arr([0, 1, 2, 0, 1, 2]), image=arr([0] * 6),
                        grid_rows=np.array([[[2, 0]]], np.int32), grid_cols=np.array([[[3, 0]]], np.int32),
                        frames=np.array([[1]], np.int32))
    (view,) = token_views(qwen, arr([1, 0, 0, 0, 0, 1], np.int8))
    assert view.aspect == 1.5  # Qwen: drawn on its resized image, square cells
    video = qwen.replace(frames=np.array([[2]], np.int32))  # 2 temporal patches of a 1x3 grid
    (view,) = token_views(video, arr([1, 0, 0, 0, 0, 1], np.int8))
    assert view.name == "frame 1/2" and view.labels.tolist() == [[1, 0, 0]] and view.aspect == 3.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one"),
    (dict(keep=np.ones(5, bool), grids=(2, 3)), "do not fill"),
    (dict(keep=np.ones(6, bool)), "2-D"),
    (dict(keep=np.ones((2, 3), np.int32)), "bool mask"),
    (dict(labels=np.array([[0, 5]])), "0 \\(dropped\\), 1 \\(kept\\)"),
    (dict(keep=[np.ones((2, 2), bool)], grids=[(2, 2), (2, 2)]), "1 arrays but 2 grid"),
    (dict(keep=np.ones((2, 2), bool), titles=["a", "b"]), "2 titles for 1"),
])
def test_bad_inputs_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        save_overlay(Image.new("RGB", (40, 30)), tmp_path / "x.png", **kwargs)


def test_label_values_are_the_engines():
    import importlib

    engine = importlib.import_module("jax_pruning.engine.generate")
    assert (DROPPED, RETAINED, CANDIDATE, MERGED, ABSORBED) == (engine.DROPPED, engine.KEPT, engine.CANDIDATE,
                                                                engine.MERGED, engine.ABSORBED)


def test_merged_tokens_are_cyan_and_the_tokens_merged_away_dim_cyan(tmp_path):
    image = _photo((64, 64), seed=3)
    labels = np.array([[MERGED, ABSORBED], [KEPT, DROPPED]], np.int8)
    panel = np.asarray(render_panel(image, TokenView("base", labels), 64)).astype(float)
    original = np.asarray(image).astype(float)
    np.testing.assert_allclose(panel[:32, :32], original[:32, :32] * (1 - CYAN_ALPHA) + np.asarray(CYAN) * CYAN_ALPHA,
                               atol=1)
    grey = DIM * _grey(original[:32, 32:]) + (1 - DIM) * DIM_TO
    np.testing.assert_allclose(panel[:32, 32:, 0], grey * (1 - ABSORBED_ALPHA) + CYAN[0] * ABSORBED_ALPHA, atol=1)
    path = save_overlay(image, tmp_path / "m.png", labels=labels)
    assert path.exists()
    assert caption(TokenView("base", labels)).endswith("kept 2/4 (50%), 1 merged")  # a merged token is seen


def test_kept_overlay_needs_a_generate_output(tmp_path):
    from jax_pruning.eval.overlay import save_kept_overlay

    with pytest.raises(ValueError, match="no visual map"):
        save_kept_overlay(tmp_path / "x.png", Image.new("RGB", (8, 8)), object())
    assert render_views(_photo(), [TokenView("base", np.ones((2, 2), np.int8))], 30, captions=False).size == (30, 22)
