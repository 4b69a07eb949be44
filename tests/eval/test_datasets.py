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
    with pytest.raises(ValueError, match="valid: easy-vqa, detail-vqa, moving-shapes, jsonl, textvqa"):
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
    assert [s.id for s in data] == ["10", "11", "12"] and data[0].task == "textvqa"
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
    assert data[0].answers == ["yes"] and data[0].task == "gqa"
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
    assert sqa[0].answers == ["B"] and sqa[0].choices == ["cat", "dog"] and sqa[0].task == "scienceqa_img"
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


def test_docvqa_and_infovqa_configs_of_one_repository(tmp_path):
    _write(tmp_path / "DocVQA" / "validation-00000-of-00001.parquet", {
        "questionId": ["337", "338"], "question": ["What is the date? ", "Who signed?"],
        "question_types": [["handwritten"], ["form"]], "image": _image_cells(["red", "green"]),
        "docId": [279, 280], "ucsf_document_id": ["a", "b"], "ucsf_document_page_no": ["1", "2"],
        "answers": [["1/8/93", "January 8, 1993"], ["T. F. Riehl"]], "data_split": ["val", "val"],
    })
    _write(tmp_path / "DocVQA" / "test-00000-of-00001.parquet", {
        "questionId": ["9"], "question": ["q"], "answers": [None], "image": _image_cells(["blue"]),
    })
    _write(tmp_path / "InfographicVQA" / "validation-00000-of-00001.parquet", {
        "questionId": ["98"], "question": ["How many?"], "answers": [["12", "twelve"]],
        "answer_type": [["single span"]], "image": _image_cells(["blue"]), "image_url": ["u"],
        "operation/reasoning": [["counting"]], "ocr": ["{}"], "data_split": ["val"],
    })
    doc = open_dataset("docvqa", tmp_path)  # the repository root: only the DocVQA folder, validation split
    assert [s.id for s in doc] == ["337", "338"] and doc[0].task == "docvqa"
    assert doc[0].question == "What is the date?" and doc[0].answers == ["1/8/93", "January 8, 1993"]
    assert doc[1].image.getpixel((0, 0)) == (0, 128, 0)
    assert open_dataset("docvqa", tmp_path / "DocVQA")[1].answers == ["T. F. Riehl"]  # the config's own folder
    info = open_dataset("infovqa", tmp_path)
    assert len(info) == 1 and info[0].answers == ["12", "twelve"] and info[0].task == "infovqa"
    assert info[0].image.getpixel((0, 0)) == (0, 0, 255)
    assert question_text(info[0].question, info[0].task) == (
        "How many?\nAnswer the question using a single word or phrase.")
    with pytest.raises(ValueError, match=r"test-00000-of-00001.parquet: row 0: column 'answers' holds None.*withheld"):
        open_dataset("docvqa", tmp_path, split="test")


def test_chartqa_and_ocrbench_layouts(tmp_path):
    _write(tmp_path / "chartqa" / "data" / "test-00000-of-00001.parquet", {
        "type": ["human_test", "augmented_test"], "question": ["Max value?", "Which year?"], "answer": ["45", "2019"],
        "image": _image_cells(["red", "blue"]),
    })
    chart = open_dataset("chartqa", tmp_path / "chartqa")
    assert [s.id for s in chart] == ["chartqa-0", "chartqa-1"] and chart[1].task == "chartqa"
    assert chart[0].answers == ["45"] and chart[1].meta["type"] == "augmented_test"
    assert question_text(chart[0].question, "chartqa") == "Max value?\nAnswer the question with a single word."

    _write(tmp_path / "ocrbench" / "data" / "test-00000-of-00001.parquet", {
        "dataset": ["IIIT5K", "HME100k"], "question": [" what is written in the image? ", "Write the formula."],
        "question_type": ["Regular Text Recognition", "Handwritten Mathematical Expression Recognition"],
        "answer": [["STOP"], ["x ^ { 2 }"]], "image": _image_cells(["red", "green"]),
    }, row_group_size=1)
    ocr = open_dataset("ocrbench", tmp_path / "ocrbench")
    assert ocr[0].question == "what is written in the image?" and ocr[0].answers == ["STOP"]
    assert ocr[1].meta["source_dataset"] == "HME100k" and ocr[0].meta["category"] == "Regular Text Recognition"
    assert question_text(ocr[0].question, "ocrbench") == "what is written in the image?"  # no instruction
    assert ocr[1].image.getpixel((0, 0)) == (0, 128, 0)


def test_bad_answer_cells_name_the_file_row_and_column(tmp_path):
    good = tmp_path / "data" / "test-00000-of-00002.parquet"
    _write(good, {"dataset": ["SVT"], "question": ["q"], "question_type": ["Doc-oriented VQA"], "answer": [["a"]]})
    _write(tmp_path / "data" / "test-00001-of-00002.parquet", {
        "dataset": ["SVT", "SVT"], "question": ["q", "q"], "question_type": ["Doc-oriented VQA"] * 2,
        "answer": [["a"], []],
    })
    with pytest.raises(ValueError, match=r"test-00001-of-00002.parquet: row 1: column 'answer' holds \[\]: no answers"):
        open_dataset("ocrbench", tmp_path)
    _write(good, {"question": ["q"], "answer": [3], "type": ["human_test"]})
    with pytest.raises(ValueError, match=r"00000-of-00002.parquet: row 0: column 'answer' holds 3: expected a string"):
        open_dataset("chartqa", good)
    _write(good, {"question": ["q"], "answer": ["a"]})
    with pytest.raises(ValueError, match=r"test-00000-of-00002.parquet: missing column\(s\) \['type'\]"):
        open_dataset("chartqa", good)
