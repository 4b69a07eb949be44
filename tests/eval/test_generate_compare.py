"""`jaxprune generate --method A B C --show-kept cmp.png`: one answer per method and one overlay row each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jax_pruning.eval.overlay import CAPTION, GAP, LEGEND, PAD, TITLE


def test_several_methods_one_comparison_figure(tmp_path):
    from jax_pruning.eval.datasets import open_dataset

    sample = open_dataset("easy-vqa", split="test", limit=1)[0]
    sample.image.save(tmp_path / "image.png")
    png = tmp_path / "cmp.png"
    script = Path(sys.executable).parent / "jaxprune"
    result = subprocess.run([str(script), "generate", "--image", str(tmp_path / "image.png"), "--prompt",
                             sample.question, "--method", "mr_pruner", "hilo", "fastv", "--keep", "0.1",
                             "--max-new-tokens", "4", "--show-kept", str(png)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    answers = result.stdout.strip().splitlines()
    assert [a.split(":")[0] for a in answers] == ["mr_pruner", "hilo", "fastv"]
    with Image.open(png) as figure:
        pixels = np.asarray(figure.convert("RGB"))
    panel = 336  # the embedded LLaVA-NeXT: square easy-VQA image, base | tiles per row
    assert pixels.shape[0] == 2 * PAD + 3 * (TITLE + CAPTION + panel) + 2 * GAP + LEGEND
    assert pixels.shape[1] >= 2 * panel + GAP
    # the image shows through kept tokens: some pixels of each row equal the resized image exactly
    image = np.asarray(sample.image.resize((panel, panel), Image.BILINEAR))
    for row in range(3):
        top = PAD + row * (TITLE + CAPTION + panel + GAP) + TITLE + CAPTION
        tiles = pixels[top:top + panel, PAD + panel + GAP:PAD + 2 * panel + GAP]
        same = np.all(tiles == image, axis=-1).mean()
        assert 0.02 < same < 0.5, (row, same)  # ~10% kept: the rest dimmed


def test_options_go_to_the_methods_that_declare_them():
    from jax_pruning.cli import _generate_pruners

    mr, hilo = _generate_pruners(["mr_pruner", "hilo"], 0.1, {"removal_layer": 1})
    assert dict(hilo.options)["removal_layer"] == 1 and "removal_layer" not in dict(mr.options)
    with pytest.raises(ValueError, match="not an option of any"):
        _generate_pruners(["mr_pruner", "hilo"], 0.1, {"nonsense": 1})
