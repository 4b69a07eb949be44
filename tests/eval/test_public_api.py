"""The package's front door: open_dataset by name (+ path), lazy exports, clear errors."""

import json

import pytest
from PIL import Image

import jax_pruning.eval as ev


def test_open_dataset_by_name_and_jsonl_path(tmp_path):
    data = ev.open_dataset("easy-vqa", split="test", limit=3)
    assert len(data) == 3 and data[0].image.mode == "RGB"
    train = ev.open_dataset("easy-vqa", split="train", limit=2)
    assert train[0].id != data[0].id or train[0].question != data[0].question
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "x1", "image": "a.png", "question": "what?",
                                                  "answer": "cat"}) + "\n")
    by_path = ev.open_dataset("jsonl", tmp_path / "q.jsonl")
    assert [s.id for s in by_path] == ["x1"] and by_path[0].answers == ["cat"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: easy-vqa, detail-vqa, moving-shapes, jsonl"):
        ev.open_dataset("imagenet")


def test_lazy_exports_resolve():
    from jax_pruning.eval.overlay import save_kept_overlay, save_overlay
    from jax_pruning.eval.plots import plot_sweep

    assert ev.plot_sweep is plot_sweep and ev.save_overlay is save_overlay
    assert ev.save_kept_overlay is save_kept_overlay
    assert callable(ev.run_eval) and callable(ev.score) and callable(ev.build_prompt)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ev.nope  # noqa: B018
