"""Datasets: easy-VQA from its package, JSONL + images, and the lmms-lab parquet layouts (built here)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jax_pruning.eval.datasets import DATASETS, open_dataset
from jax_pruning.eval.prompts import build_prompt, question_text
from jax_pruning.eval.samples import SampleError


def _png(color, size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_cells(colors):
    return [{"bytes": _png(c), "path": None} for c in colors]


def _write(path, columns: dict, row_group_size=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)


def test_easy_vqa_from_package():
    data = open_dataset("easy-vqa", limit=5)
    assert len(data) == 5
    sample = data[0]
    assert sample.task == "exact_match" and sample.answers and isinstance(sample.question, str)
    assert sample.image.mode == "RGB" and sample.image.size == (64, 64)
    subset = open_dataset("easy-vqa", limit=5, seed=0)
    ids = [int(s.id.rsplit("-", 1)[1]) for s in subset]
    assert ids == sorted(ids) and ids != list(range(5))
    assert [s.id for s in open_dataset("easy-vqa", limit=5, seed=0)] == [s.id for s in subset]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: easy-vqa, jsonl, textvqa"):
        open_dataset("vqav9")
    with pytest.raises(ValueError, match="needs a path"):
        open_dataset("pope")
    with pytest.raises(ValueError, match="limit"):
        open_dataset("easy-vqa", limit=0)


def test_jsonl_and_image_folder(tmp_path):
    Image.new("RGB", (10, 10), "red").save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    lines = [{"id": 1, "image": "red.png", "question": "What colour?", "answer": "red"},
             {"id": "b", "image": "broken.png", "question": "Which?", "answers": ["x", "y"], "choices": ["x", "y"]},
             {"id": "c", "image": "missing.png", "question": "Q", "answers": ["z"]}]
    file = tmp_path / "data.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = open_dataset("jsonl", file)
    assert [s.id for s in data] == ["1", "b", "c"]
    assert data[0].answers == ["red"] and data[0].image.getpixel((0, 0)) == (255, 0, 0)
    assert data[1].choices == ["x", "y"]
    with pytest.raises(SampleError, match="'b'.*does not load"):
        data[1].image
    with pytest.raises(SampleError, match="does not exist"):
        data[2].image
    file.write_text(json.dumps({"id": 1, "image": "red.png"}) + "\n")
    with pytest.raises(ValueError, match=r"data.jsonl:1: missing field\(s\) question, answers"):
        open_dataset("jsonl", file)


def test_textvqa_layout(tmp_path):
    _write(tmp_path / "data" / "validation-00000-of-00001.parquet", {
        "question_id": [10, 11, 12], "question": ["what does it say?", "b?", "c?"],
        "answers": [["stop"] * 10, ["b"] * 10, ["c"] * 10], "image_id": ["i0", "i1", "i2"],
        "image": _image_cells(["red", "green", "blue"]), "ocr_tokens": [["stop"], [], []],
    }, row_group_size=2)
    _write(tmp_path / "data" / "train-00000-of-00001.parquet", {"question_id": [99]})  # other split: ignored
    data = open_dataset("textvqa", tmp_path)
    assert [s.id for s in data] == ["10", "11", "12"] and data[0].task == "vqa"
    assert len(data[0].answers) == 10
    assert [s.image.getpixel((0, 0)) for s in data] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]  # across row groups
    assert len(open_dataset("textvqa", tmp_path, limit=2, seed=1)) == 2


def test_gqa_layout_images_in_their_own_files(tmp_path):
    _write(tmp_path / "testdev_balanced_instructions" / "testdev-00000-of-00001.parquet", {
        "id": ["q1", "q2"], "imageId": ["n2", "n9"], "question": ["Is it red?", "What?"], "answer": ["yes", "cat"],
        "fullAnswer": ["Yes, it is.", "A cat."],
    })
    _write(tmp_path / "testdev_balanced_images" / "testdev-00000-of-00001.parquet", {
        "id": ["n1", "n2"], "image": _image_cells(["blue", "red"]),
    })
    data = open_dataset("gqa", tmp_path)
    assert data[0].answers == ["yes"] and data[0].task == "exact_match"
    assert data[0].image.getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(SampleError, match="imageId 'n9'"):
        data[1].image


def test_pope_mme_scienceqa_layouts(tmp_path):
    _write(tmp_path / "pope" / "data" / "test-00000-of-00001.parquet", {
        "id": ["0", "1"], "question_id": ["1", "1"], "question": ["Is there a dog in the image?"] * 2,
        "answer": ["yes", "no"], "image_source": ["a", "b"], "category": ["adversarial", "random"],
        "image": _image_cells(["red", "blue"]),
    })
    pope = open_dataset("pope", tmp_path / "pope")
    assert [s.id for s in pope] == ["adversarial/1", "random/1"] and pope[1].meta["category"] == "random"

    _write(tmp_path / "mme" / "data" / "test-00000-of-00001.parquet", {
        "question_id": ["color/01.png", "color/01.png"],
        "question": ["Is it red? Please answer yes or no.", "Is it blue? Please answer yes or no."],
        "answer": ["Yes", "No"], "category": ["color", "color"], "image": _image_cells(["red", "red"]),
    })
    mme = open_dataset("mme", tmp_path / "mme")
    assert [s.id for s in mme] == ["color/01.png#0", "color/01.png#1"]
    assert mme[0].meta["image_id"] == "color/01.png" and mme[0].task == "mme"
    assert question_text(mme[0].question, "mme") == "Is it red?\nPlease answer yes or no."

    _write(tmp_path / "sqa" / "ScienceQA-IMG" / "test-00000-of-00001.parquet", {
        "question": ["Which animal?"], "choices": [["cat", "dog"]], "answer": [1], "hint": ["Look closely."],
        "image": [None], "task": ["closed choice"],
    })
    sqa = open_dataset("scienceqa-img", tmp_path / "sqa")
    assert sqa[0].answers == ["B"] and sqa[0].choices == ["cat", "dog"]
    assert sqa[0].question == "Context: Look closely.\nWhich animal?"
    with pytest.raises(SampleError, match="no image bytes"):
        sqa[0].image
    assert question_text(sqa[0].question, "multiple_choice", sqa[0].choices).endswith(
        "Which animal?\nA. cat\nB. dog\nAnswer with the option's letter from the given choices directly.")


def test_missing_columns_and_files_are_named(tmp_path):
    _write(tmp_path / "data" / "test-00000-of-00001.parquet", {"question": ["q"], "answer": ["yes"]})
    with pytest.raises(ValueError, match="missing column"):
        open_dataset("pope", tmp_path)
    with pytest.raises(FileNotFoundError, match="split 'validation'"):
        open_dataset("textvqa", tmp_path)


def test_build_prompt_uses_the_chat_template():
    class Proc:
        def chat_prompt(self, text):
            return f"<user><image>{text}</user>"

    assert build_prompt(Proc(), " What? ", "vqa") == (
        "<user><image>What?\nAnswer the question using a single word or phrase.</user>")
    with pytest.raises(ValueError, match="needs its choices"):
        build_prompt(Proc(), "Q", "multiple_choice")
    assert "easy-vqa" in DATASETS
