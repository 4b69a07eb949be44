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
    (dict(labels=np.array([[0, 3]])), "0 \\(dropped\\)"),
    (dict(keep=[np.ones((2, 2), bool)], grids=[(2, 2), (2, 2)]), "1 arrays but 2 grid"),
    (dict(keep=np.ones((2, 2), bool), titles=["a", "b"]), "2 titles for 1"),
])
def test_bad_inputs_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        save_overlay(_white(), tmp_path / "x.png", **kwargs)
