"""Fault injection for images through `Processor` (both tiny folders) and on into `jp.generate` (Qwen).

Outcome classes: (b) processed -> pixel_values present and, for Qwen, `jp.generate` gives tokens [1, n];
(a) refused -> a ValueError naming the image index (and its file, for paths). Nothing else escapes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import jax_pruning as jp
import models
from jax_pruning.demo import ASSETS
from jax_pruning.processing import Processor

FOLDERS = ["tiny_qwen2_vl", "tiny_llava_next"]
MODES = ["L", "LA", "RGBA", "CMYK", "P", "I;16", "I", "F", "1", "PA", "YCbCr", "HSV", "LAB", "RGBX", "I;16B"]


@pytest.fixture(scope="module")
def processors():
    return {folder: Processor.from_folder(ASSETS / folder) for folder in FOLDERS}


@pytest.fixture(scope="module")
def qwen_model():
    return models.load(ASSETS / "tiny_qwen2_vl")


def _run(processor, image, index=1):
    """Put `image` at position `index` of a batch whose other images are fine."""
    prompt = processor.chat_prompt("what shape?")
    images = [Image.new("RGB", (32, 32), "red")] * index + [image]
    return processor(images, [prompt] * len(images))


def _pixels_ok(out):
    pixels = np.asarray(out["pixel_values"])
    assert pixels.size > 0 and np.isfinite(pixels).all()


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("mode", MODES)
def test_unusual_modes_are_converted_and_processed(processors, folder, mode):
    image = Image.new(mode, (40, 30))
    out = _run(processors[folder], image)
    _pixels_ok(out)
    rgb = _run(processors[folder], image.convert("RGBA" if "A" in image.getbands() else "RGB"))
    np.testing.assert_allclose(out["pixel_values"], rgb["pixel_values"], atol=1e-5)  # same as converting first


@pytest.mark.parametrize("mode", ["L", "CMYK", "I;16", "F", "1", "P"])
def test_unusual_modes_generate_on_qwen(processors, qwen_model, mode):
    processor = processors["tiny_qwen2_vl"]
    image = Image.new(mode, (32, 32))
    inputs = processor([image], [processor.chat_prompt("what shape?")])
    tokens = np.asarray(jp.generate(qwen_model, inputs, None, 2).tokens)
    assert tokens.ndim == 2 and tokens.shape[0] == 1 and 1 <= tokens.shape[1] <= 2


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_mode_pil_cannot_convert_is_named(processors, folder):
    with pytest.raises(ValueError, match=r"image 1 cannot be decoded: conversion from La"):
        _run(processors[folder], Image.new("La", (8, 8)))


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 1), (3, 600), (600, 3), (1, 200), (200, 1)])
def test_tiny_and_thin_images_are_processed(processors, folder, size):
    _pixels_ok(_run(processors[folder], Image.new("RGB", size, "green")))


@pytest.mark.parametrize("size", [(1, 4000), (4000, 1), (1, 201), (2, 403)])
def test_extreme_aspect_ratios(processors, size):
    # LLaVA-NeXT pads to its grid: processed. Qwen-VL refuses ratios > 200: a ValueError naming the image.
    _pixels_ok(_run(processors["tiny_llava_next"], Image.new("RGB", size)))
    with pytest.raises(ValueError, match=rf"image 1 is {size[0]}x{size[1]} pixels"):
        _run(processors["tiny_qwen2_vl"], Image.new("RGB", size))


@pytest.mark.parametrize("folder", FOLDERS)
def test_empty_pil_image_is_named(processors, folder):
    with pytest.raises(ValueError, match=r"image 0 cannot be decoded: it is 0x5 pixels"):
        _run(processors[folder], Image.new("RGB", (0, 5)), index=0)


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 600), height=st.integers(1, 600), mode=st.sampled_from(MODES + ["RGB"]))
def test_any_size_and_mode_is_processed_or_named(processors, width, height, mode):
    image = Image.new(mode, (width, height))
    for folder, processor in processors.items():
        try:
            out = _run(processor, image)
        except ValueError as err:
            assert folder == "tiny_qwen2_vl" and max(width, height) / min(width, height) > 200, err
            assert f"image 1 is {width}x{height} pixels" in str(err)
            continue
        _pixels_ok(out)


def _png_bytes(mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (48, 48), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("cut", [0, 1, 8, 33, 100])
def test_truncated_files_are_named(processors, folder, cut, tmp_path):
    path = tmp_path / f"cut{cut}.png"
    path.write_bytes(_png_bytes()[:cut])
    with pytest.raises(ValueError, match=rf"image 1 \(.*cut{cut}.png\) cannot be decoded"):
        _run(processors[folder], str(path))


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".gif", ".bin", ""]))
def test_random_bytes_as_a_path_are_named(processors, tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"random{suffix}"
    path.write_bytes(data)
    processor = processors["tiny_qwen2_vl"]
    try:
        out = _run(processor, path, index=0)
    except ValueError as err:
        assert "image 0 (" in str(err) and path.name in str(err) and "cannot be decoded" in str(err), err
        return
    _pixels_ok(out)  # by chance a decodable image (PIL is lenient with some headers)


@pytest.mark.parametrize("folder", FOLDERS)
def test_missing_file_and_folder_paths_are_named(processors, folder, tmp_path):
    with pytest.raises(ValueError, match=r"image 1 \(.*nothere.png\) cannot be decoded"):
        _run(processors[folder], tmp_path / "nothere.png")
    with pytest.raises(ValueError, match=rf"image 1 \({tmp_path}\) cannot be decoded"):
        _run(processors[folder], str(tmp_path))


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("thing", [None, 3, 2.5, b"\x89PNG", {"image": 1}, [[]], object()],
                         ids=["None", "int", "float", "bytes", "dict", "nested-empty", "object"])
def test_non_image_objects_are_named(processors, folder, thing):
    with pytest.raises(ValueError, match=r"image (1|0 of text 1)"):
        _run(processors[folder], thing)


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("shape", [(), (5,), (8, 8), (1, 8, 8, 3), (1, 1, 8, 8, 3), (0, 0, 3), (8, 0, 3)])
def test_arrays_of_the_wrong_rank_or_empty_are_named(processors, folder, shape):
    with pytest.raises(ValueError, match=rf"image 1 is an array of shape \({', '.join(map(str, shape))},?\)"):
        _run(processors[folder], np.zeros(shape, np.uint8))


@pytest.mark.parametrize("folder", FOLDERS)
def test_arrays_of_one_image_are_processed(processors, folder):
    _pixels_ok(_run(processors[folder], np.full((20, 30, 3), 128, np.uint8)))
    _pixels_ok(_run(processors[folder], np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)))


def test_an_array_image_generates_on_qwen(processors, qwen_model):
    processor = processors["tiny_qwen2_vl"]
    inputs = processor([np.full((32, 32, 3), 200, np.uint8)], [processor.chat_prompt("what shape?")])
    tokens = np.asarray(jp.generate(qwen_model, inputs, None, 2).tokens)
    assert tokens.shape[0] == 1 and tokens.ndim == 2
