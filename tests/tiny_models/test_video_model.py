"""The shipped video model (jax_pruning/assets/tiny_qwen2_vl_video): a Hub-style folder that HF and `models.load`
both run on moving-shapes clips with the same greedy answers, through `jaxprune eval` too.

Its measured accuracy is in benchmarks/results/amd-epyc-2c/accuracy_video; here a floor well above chance
(1/4 for directions, 1/5 for colours)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import jax_pruning as jp
import models
from benchmarks.tiny_models.train_video import answer_video
from jax_pruning.demo import ASSETS
from jax_pruning.eval import open_dataset
from jax_pruning.processing import Processor

FOLDER = ASSETS / "tiny_qwen2_vl_video"
N_CLIPS = 12


@pytest.fixture(scope="module")
def hf():
    from transformers import Qwen2VLForConditionalGeneration

    torch.set_num_threads(1)
    return Qwen2VLForConditionalGeneration.from_pretrained(FOLDER, local_files_only=True).eval()


def test_folder_is_small_and_complete():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        assert (FOLDER / name).is_file(), name
    assert sum(f.stat().st_size for f in FOLDER.iterdir()) <= 10 * 2**20
    processor = Processor.from_folder(FOLDER)
    assert json.loads((FOLDER / "config.json").read_text())["model_type"] == "qwen2_vl"
    assert "<|video_pad|>" in processor.chat_prompt("what color appears last?", video=True)


def test_answers_beat_chance_and_jax_agrees(hf):
    processor = Processor.from_folder(FOLDER)
    data = open_dataset("moving-shapes", split="test", limit=3 * N_CLIPS)
    clips, questions = [s.video for s in data], [s.question for s in data]
    want = answer_video(hf, processor, clips, questions, 2)
    accuracy = np.mean([w == s.answers[0] for w, s in zip(want, data)])
    assert accuracy >= 0.6, (accuracy, list(zip(want, [s.answers[0] for s in data])))
    inputs = processor(None, [processor.chat_prompt(q, video=True) for q in questions],
                       videos=[[c.frames] for c in clips], video_fps=[c.fps for c in clips])
    out = jp.generate(models.load(FOLDER), inputs, None, 2)
    eos = processor.tokenizer.eos_token_id
    got = [processor.tokenizer.decode(row[:row.index(eos)] if eos in row else row, skip_special_tokens=True).strip()
           for row in np.asarray(out.tokens).tolist()]
    assert got == want


def test_cli_eval_on_moving_shapes(tmp_path):
    from jax_pruning.cli import main

    code = main(["eval", "--model", str(FOLDER), "--data", "moving-shapes", "--limit", "6", "--bare-prompt",
                 "--method", "none", "evs", "--keep", "0.25", "--batch-size", "3", "--max-new-tokens", "2",
                 "--out", str(tmp_path)])
    assert code == 0
    sweep = json.loads(next(tmp_path.rglob("sweep.json")).read_text())
    runs = {s["method"]: s for s in sweep}
    assert set(runs) == {"none", "evs"} and all(s["n_failed"] == 0 and s["n_samples"] == 6 for s in sweep)
    assert runs["none"]["mean_visual_tokens"] == 144 and runs["evs"]["mean_visual_tokens"] == 36
