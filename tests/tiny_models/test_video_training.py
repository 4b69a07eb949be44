"""The video recipe (benchmarks/tiny_models/train_video.py): its folder (video template, frame sizes), a two-step
run, the answer masks of its packed conversations, and HF greedy answers equal to `jp.generate` on its model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import jax_pruning as jp
import models
from benchmarks.tiny_models.data import answer_mask
from benchmarks.tiny_models.tokenizer import generation_prompt_ids
from benchmarks.tiny_models.train_video import (VIDEO_HEADS, VideoRecipe, answer_video, evaluate, owners,
                                                token_labels, train)
from jax_pruning.eval import motion_vqa as mv
from jax_pruning.eval.samples import Clip
from jax_pruning.processing import Processor
from tests.tiny_models.test_training import SMOKE_SIZES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("video")
    stats = train(out, VideoRecipe(clips=8, epochs=1, batch_clips=4, lr=1e-2, vision_epochs=1, vision_clips=8,
                                   freeze_vision=1), SMOKE_SIZES, log_every=1)
    return out, stats


def test_stage1_labels_follow_the_pixels():
    """Token labels against the rendered frames: the mover's tokens are where its colour is in the token's two
    frames, "new" marks the arrivals' temporal patches only, colours are those of the pixels."""
    names = list(mv.COLORS)
    for i in range(20):
        clip = mv.clip_of("train", i)
        frames, labels = mv.render(clip), token_labels(clip)
        assert labels.shape == (4 * 6 * 6, len(VIDEO_HEADS))
        grid = labels.reshape(4, 6, 6, -1)
        for t in range(4):
            for r in range(6):
                for c in range(6):
                    area = frames[2 * t:2 * t + 2, 8 * r:8 * r + 8, 8 * c:8 * c + 8]
                    shown = {n for n, rgb in mv.COLORS.items() if (area == rgb).all(-1).any()}
                    colour, moving, direction, new = grid[t, r, c]
                    assert (colour > 0) == bool(shown) and (colour == 0 or names[colour - 1] in shown)
                    assert moving == (clip.mover.color in shown)
                    assert direction == (list(mv.DIRECTIONS).index(clip.mover.direction) + 1 if moving else 0)
                    arrived = {a.color for a in clip.arrivals if a.first_frame == 2 * t}
                    assert new == bool(arrived & shown)
        assert (owners(clip)[-1] >= 0).sum() == sum(int(mv._shape_mask(th).sum()) for th in clip.things)


def test_two_steps_and_the_folder(trained):
    folder, stats = trained
    assert stats["steps"] == 2 and all(np.isfinite(e["loss"]) and e["loss"] > 0 for e in stats["log"])
    assert {f"{k}_accuracy" for k in VIDEO_HEADS} <= set(stats["log"][0])  # stage 1 ran first
    processor = Processor.from_folder(folder)
    assert processor.video_pixels == (16 * 16, mv.SIDE * mv.SIDE)
    raw = json.loads((folder / "config.json").read_text())
    assert raw["video_token_id"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    clip = mv.clip_of("test", 0)
    prompt = processor.chat_prompt(mv.questions(clip)[0].text, video=True)
    batch = processor(None, [prompt], videos=[mv.frames(clip)], video_fps=mv.FPS)
    assert batch["video_grid_thw"].tolist() == [[4, 12, 12]]  # 8 frames / 2, 48 px / patch 4
    assert int((batch["input_ids"] == raw["video_token_id"]).sum()) == 144
    unknown = processor.tokenizer.convert_tokens_to_ids("[UNK]")
    for q in mv.questions(clip):  # every question and answer word is in the vocabulary
        assert unknown not in processor.tokenizer(f"{q.text} {q.answer}", add_special_tokens=False)["input_ids"]


def test_answer_mask_covers_each_answer_and_its_eos(trained):
    folder, _ = trained
    processor = Processor.from_folder(folder)
    tok = processor.tokenizer
    clip = mv.clip_of("train", 3)
    qs = mv.questions(clip)
    turns = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": qs[0].text}]},
             {"role": "assistant", "content": qs[0].answer},
             {"role": "user", "content": [{"type": "text", "text": qs[1].text}]},
             {"role": "assistant", "content": qs[1].answer}]
    text = tok.apply_chat_template(turns, tokenize=False)
    batch = processor(None, [text], videos=[mv.frames(clip)], video_fps=mv.FPS)
    mask = answer_mask(batch["input_ids"], generation_prompt_ids(tok), tok.eos_token_id)[0]
    kept = batch["input_ids"][0][mask]
    assert tok.decode(kept.tolist()).split() == [qs[0].answer, "<|im_end|>", qs[1].answer, "<|im_end|>"]


def test_hf_and_jax_give_the_same_answers(trained):
    """The trained-for-two-steps model through HF generate and through models.load + jp.generate, unpruned and
    with EVS: the same greedy tokens (EVS: its own path, so just a valid answer and fewer tokens)."""
    folder, _ = trained
    from transformers import Qwen2VLForConditionalGeneration

    hf = Qwen2VLForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    processor = Processor.from_folder(folder)
    clips = [mv.clip_of("test", i) for i in range(3)]
    questions = [mv.questions(c)[i % 3].text for i, c in enumerate(clips)]
    want = answer_video(hf, processor, [Clip(mv.frames(c), mv.FPS) for c in clips], questions, 2)
    texts = [processor.chat_prompt(q, video=True) for q in questions]
    inputs = processor(None, texts, videos=[[mv.frames(c)] for c in clips], video_fps=mv.FPS)
    model = models.load(folder)
    out = jp.generate(model, inputs, None, 2)
    got = [processor.tokenizer.decode(row[:list(row).index(processor.tokenizer.eos_token_id)]
                                      if processor.tokenizer.eos_token_id in row else row,
                                      skip_special_tokens=True).strip() for row in np.asarray(out.tokens).tolist()]
    assert got == want
    pruned = jp.generate(model, inputs, jp.pruner("evs", keep_ratio=0.25), 2)
    assert list(np.asarray(pruned.visual_tokens)) == [36] * 3  # a quarter of 144


def test_evaluate_scores_by_type(trained):
    folder, _ = trained
    result = evaluate(folder, clips=2, batch_clips=4)
    assert result["questions"] == 6 and set(result["accuracy_by_type"]) == set(mv.QUESTION_TYPES)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["visual_tokens_per_clip"] == 144
