"""Bad inputs end in one clear error naming the input (config.json, an image, a folder), never a bare
traceback from inside transformers / PIL, and killed conversions leave nothing behind for long."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models
from convert import convert_checkpoint
from jax_pruning import cli
from jax_pruning.demo import ASSETS
from jax_pruning.processing import Processor

QWEN = ASSETS / "tiny_qwen2_vl"


@pytest.fixture()
def qwen_copy(tmp_path) -> Path:
    folder = tmp_path / "qwen"
    shutil.copytree(QWEN, folder)
    return folder


def _truncated_png(path: Path) -> Path:
    Image.new("RGB", (64, 64), "red").save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


@pytest.mark.parametrize("content", ["[1, 2]", '"qwen2_vl"', "{}"])
def test_config_that_is_not_an_object_with_model_type(qwen_copy, tmp_path, content):
    (qwen_copy / "config.json").write_text(content)
    with pytest.raises(ValueError, match="config.json"):
        models.load(qwen_copy)
    with pytest.raises(ValueError, match="config.json"):
        convert_checkpoint(qwen_copy, tmp_path / "out", progress=False)


def test_config_field_of_the_wrong_type_names_the_file(qwen_copy):
    config = json.loads((qwen_copy / "config.json").read_text())
    text = config.get("text_config", config)
    text["num_hidden_layers"] = "three"
    (qwen_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json"):
        models.load(qwen_copy)


def test_processor_empty_batch_and_undecodable_images(tmp_path):
    processor = Processor.from_folder(QWEN)
    prompt = processor.chat_prompt("what shape?")
    with pytest.raises(ValueError, match="batch is empty"):
        processor([], [])
    bad = _truncated_png(tmp_path / "cut.png")
    with pytest.raises(ValueError, match=r"image 1 \(.*cut.png\) cannot be decoded"):
        processor([Image.new("RGB", (32, 32)), str(bad)], [prompt, prompt])
    with pytest.raises(ValueError, match=r"image 0 \(.*cut.png\) cannot be decoded"):
        processor([Image.open(bad)], [prompt])  # PIL opens lazily: the decode fails later, still named
    path = tmp_path / "fine.png"
    Image.new("RGB", (32, 32), "blue").save(path)
    good = processor([str(path)], [prompt])  # a path is read and decoded like an image
    assert np.asarray(good["pixel_values"]).shape[0] > 0


def test_qwen_aspect_ratio_refusal_names_the_image():
    processor = Processor.from_folder(QWEN)
    prompt = processor.chat_prompt("what shape?")
    with pytest.raises(ValueError, match=r"image 1 is 3000x10 pixels"):
        processor([Image.new("RGB", (32, 32)), Image.new("RGB", (3000, 10))], [prompt, prompt])


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "file").write_text("x")
    assert cli.main(["convert", str(QWEN), str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    bad = _truncated_png(tmp_path / "cut.png")
    assert cli.main(["generate", "--model", str(QWEN), "--image", str(bad), "--prompt", "what?"]) == 2
    err = capsys.readouterr().err
    assert "cut.png" in err and "cannot be decoded" in err and "Traceback" not in err


def test_stale_temp_folders_of_any_conversion_in_the_parent_are_removed(tmp_path):
    dead = 2**22 + 12345  # above Linux's default pid_max: no live process has it
    stale = tmp_path / f".other.converting-{dead}-deadbeef"
    stale.mkdir()
    (stale / "params").mkdir()
    live = tmp_path / f".third.converting-{os.getpid()}-cafecafe"  # a writer still running: kept
    live.mkdir()
    convert_checkpoint(QWEN, tmp_path / "out", progress=False)
    assert not stale.exists() and live.exists()


def test_wrong_model_type_for_the_weights_names_config_json(qwen_copy):
    config = json.loads((qwen_copy / "config.json").read_text())
    config["model_type"] = "llava_next"
    (qwen_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: .*model_type 'llava_next'"):
        models.load(qwen_copy)


def test_eval_records_an_over_long_prompt_as_a_failed_sample_and_goes_on(tmp_path):
    import dataclasses

    from jax_pruning.eval.runner import run_eval
    from jax_pruning.eval.samples import Sample
    from jax_pruning.sweep import bare_prompt, predictor

    model = models.load(QWEN)
    processor = Processor.from_folder(QWEN)
    image = Image.new("RGB", (32, 32), "red")
    samples = [Sample(f"s{i}", q, ["circle"], "exact_match", lambda: image)
               for i, q in enumerate(["what shape?", "what shape? " + "very " * 60 + "long", "what colour?"])]
    short = dataclasses.replace(model.config, text=dataclasses.replace(model.config.text, max_position_embeddings=60))
    model.config = short
    summary = run_eval(samples, predictor(model, processor, None, max_new_tokens=2, prompt=bare_prompt(processor)),
                       tmp_path / "run", batch_size=3, progress=False)
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())}
    assert records["s1"]["ok"] is False and "max_position_embeddings=60" in records["s1"]["error"]
    assert records["s0"]["ok"] and records["s2"]["ok"]
    assert summary["n_failed"] == 1 and summary["n_samples"] == 3


@pytest.mark.parametrize("mutation, words", [
    ("binary", "not valid JSON"),
    ("bert", "no key map for model_type 'bert'"),
    ("heads0", "ZeroDivisionError"),
    ("vocab-5", "vocab_size=-5 must be an integer >= 1"),
    ("layers-1", "num_hidden_layers=-1 must be an integer >= 0"),
    ("layers1e6", "num_hidden_layers=1000000 is implausible"),
])
def test_impossible_config_values_name_config_json(tmp_path, mutation, words):
    folder = tmp_path / "llava"
    shutil.copytree(ASSETS / "tiny_llava_next", folder)
    file = folder / "config.json"
    config = json.loads(file.read_text())
    text = config["text_config"]
    if mutation == "binary":
        file.write_bytes(b"\xff\xfe\x00")
    else:
        {"bert": lambda: config.update(model_type="bert"), "heads0": lambda: text.update(num_attention_heads=0),
         "vocab-5": lambda: text.update(vocab_size=-5), "layers-1": lambda: text.update(num_hidden_layers=-1),
         "layers1e6": lambda: text.update(num_hidden_layers=10**6)}[mutation]()
        file.write_text(json.dumps(config))
    for call in (lambda: models.load(folder), lambda: convert_checkpoint(folder, tmp_path / "out", progress=False)):
        with pytest.raises(ValueError, match="config.json") as err:
            call()
        assert words in str(err.value)
    assert not (tmp_path / "out").exists()
