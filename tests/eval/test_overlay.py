"""Kept-token overlays: fixed PNG size, the colours land on the right cells, bad inputs raise."""

import numpy as np
import pytest
from PIL import Image

from jax_pruning.eval.overlay import CANDIDATE, DROPPED, GAP, LABEL_COLOURS, RETAINED, TITLE_HEIGHT, save_overlay


def _white(size=(40, 30)):
    return Image.new("RGB", size, (255, 255, 255))


def test_mr_pruner_style_two_grids_side_by_side(tmp_path):
    base = np.zeros((2, 2), bool)
    base[0, 0] = True  # only the top-left base token kept
    tiles = np.ones(12, bool)  # flat, with its grid given
    path = save_overlay(_white(), tmp_path / "mr.png", keep=[base, tiles], grids=[(2, 2), (3, 4)],
                        titles=["base", "tiles"], panel_size=64)
    out = Image.open(path)
    assert path.stat().st_size > 0
    assert out.size == (2 * 64 + GAP, 64 + TITLE_HEIGHT)
    pixels = np.asarray(out.convert("RGB")).astype(int)
    # base panel: a dropped cell (bottom-right) is darkened, the kept one (top-left, away from its outline) is white
    assert pixels[TITLE_HEIGHT + 48, 48].max() < 100
    assert tuple(pixels[TITLE_HEIGHT + 10, 10]) == (255, 255, 255)
    # tile panel: everything kept, cell interiors stay white
    assert tuple(pixels[TITLE_HEIGHT + 10, 64 + GAP + 5]) == (255, 255, 255)


def test_hilo_style_three_colours(tmp_path):
    labels = np.array([[RETAINED, CANDIDATE], [DROPPED, RETAINED]])
    path = save_overlay(_white(), tmp_path / "hilo.png", labels=labels, panel_size=50)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels.shape == (50, 50, 3)

    def expected(label, alpha):
        return np.round(255 * (1 - alpha) + np.asarray(LABEL_COLOURS[label]) * alpha)

    np.testing.assert_allclose(pixels[10, 10], expected(RETAINED, 0.35), atol=1)
    np.testing.assert_allclose(pixels[10, 40], expected(CANDIDATE, 0.35), atol=1)
    np.testing.assert_allclose(pixels[40, 10], expected(DROPPED, 0.6), atol=1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one"),
    (dict(keep=np.ones(5, bool), grids=(2, 3)), "do not fill"),
    (dict(keep=np.ones(6, bool)), "2-D"),
    (dict(keep=np.ones((2, 3), np.int32)), "bool mask"),
    (dict(labels=np.array([[0, 3]])), "0 \\(dropped\\), 1 \\(retained\\)"),
    (dict(keep=[np.ones((2, 2), bool)], grids=[(2, 2), (2, 2)]), "1 arrays but 2 grid"),
    (dict(keep=np.ones((2, 2), bool), titles=["a", "b"]), "2 titles for 1"),
])
def test_bad_inputs_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        save_overlay(_white(), tmp_path / "x.png", **kwargs)


def _visual_map():
    """One LLaVA-NeXT-like sample: base 2x2, tiles 2x3, 2 newline slots, 2 padding slots."""
    from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE, VisualTokens

    kind = [KIND_BASE] * 4 + [KIND_TILE] * 3 + [KIND_NEWLINE] + [KIND_TILE] * 3 + [KIND_NEWLINE] + [0, 0]
    row = [0, 0, 1, 1] + [0, 0, 0, 0] + [1, 1, 1, 1] + [-1, -1]
    col = [0, 1, 0, 1] + [0, 1, 2, 3] + [0, 1, 2, 3] + [-1, -1]
    valid = [True] * 12 + [False] * 2
    arr = lambda x, dt=np.int32: np.asarray([x], dt)  # noqa: E731
    return VisualTokens(index=arr(list(range(14))), valid=arr(valid, bool), kind=arr(kind, np.int8),
                        row=arr(row), col=arr(col), image=arr([0] * 12 + [-1, -1]),
                        grid_rows=np.array([[[2, 2]]], np.int32), grid_cols=np.array([[[2, 3]]], np.int32),
                        frames=np.array([[1]], np.int32))


class _Out:
    def __init__(self, labels):
        self.visual, self.visual_labels = _visual_map(), np.asarray([labels], np.int8)


def test_label_values_are_the_engines():
    import importlib

    engine = importlib.import_module("jax_pruning.engine.generate")

    assert (DROPPED, RETAINED, CANDIDATE) == (engine.DROPPED, engine.KEPT, engine.CANDIDATE)


def test_kept_overlay_from_a_generate_output(tmp_path):
    from jax_pruning.eval.overlay import label_grids, save_kept_overlay

    labels = [1, 0, 0, 1] + [1, 1, 0, 1] + [0, 0, 1, 1] + [0, 0]  # newline slots (index 7, 11) left out
    out = _Out(labels)
    grids = label_grids(out.visual, out.visual_labels)
    assert [name for name, _ in grids] == ["base", "tiles"]
    np.testing.assert_array_equal(grids[0][1], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(grids[1][1], [[1, 1, 0], [0, 0, 1]])
    path = save_kept_overlay(tmp_path / "kept.png", _white(), out, panel_size=40)
    assert Image.open(path).size == (2 * 40 + GAP, 40 + TITLE_HEIGHT)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels[TITLE_HEIGHT + 30, 10].max() < 100  # base (1, 0) dropped: darkened
    # a Hi-Lo output (candidates present) is drawn in the three-colour style
    labels[1] = CANDIDATE
    path = save_kept_overlay(tmp_path / "hilo.png", _white(), _Out(labels), panel_size=40)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    expected = np.round(255 * 0.65 + np.asarray(LABEL_COLOURS[CANDIDATE]) * 0.35)
    np.testing.assert_allclose(pixels[TITLE_HEIGHT + 10, 30], expected, atol=1)
    with pytest.raises(ValueError, match="no visual tokens of image 1"):
        save_kept_overlay(tmp_path / "x.png", _white(), out, image_index=1)
    with pytest.raises(ValueError, match="no visual map"):
        save_kept_overlay(tmp_path / "x.png", _white(), object())
