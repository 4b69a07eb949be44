"""Video rows in evaluation: frame folders / animated images (eval/videos.py), JSONL video rows, and a sweep
over a JSONL of image and video rows on a tiny random Qwen2-VL (each row equal to its own `jp.generate`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import jax_pruning as jp
import models
from jax_pruning.eval import open_dataset
from jax_pruning.eval.samples import SampleError
from jax_pruning.eval.videos import read_video, spread
from jax_pruning.processing import Processor
from jax_pruning.sweep import bare_prompt, processor_inputs, sweep
from tests.engine import families as F
from tests.models import qwen_tiny as qt
from tests.tiny_folder import llava_folder

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
FRAME = 28 * 28  # one merged token of the tiny Qwen2-VL (patch 14, merge 2)


def solid_frames(count: int, size=(84, 84), seed: int = 0) -> list[Image.Image]:
    """Frames of a few flat colours (a GIF stores them exactly) with a moving square."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(count):
        pixels = np.full((size[1], size[0], 3), rng.integers(0, 4) * 60, np.uint8)
        pixels[10:30, 5 + 8 * t:25 + 8 * t] = (200, 40, 40)
        out.append(Image.fromarray(pixels))
    return out


def save_folder(frames, folder, names=None):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        frame.save(folder / (names[i] if names else f"frame_{i}.png"))
    return folder


def save_gif(frames, path):
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def test_frame_folder_in_natural_order_and_spread(tmp_path):
    frames = solid_frames(12)
    save_folder(frames, tmp_path / "v")
    (tmp_path / "v" / "notes.txt").write_text("not a frame")
    clip = read_video(tmp_path / "v", fps=3.0)
    assert len(clip.frames) == 12 and clip.fps == 3.0  # frame_10 after frame_9, the .txt ignored
    for got, want in zip(clip.frames, frames):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    sampled = read_video(tmp_path / "v", fps=3.0, max_frames=4)
    assert [np.asarray(f).tobytes() for f in sampled.frames] == [np.asarray(frames[i]).tobytes() for i in (0, 4, 7, 11)]
    assert sampled.fps == pytest.approx(1.0)  # same duration, a third of the frames
    assert list(spread(5, None)) == list(range(5)) and list(spread(5, 9)) == list(range(5))


def test_gif_frames_exact(tmp_path):
    frames = solid_frames(5, seed=1)
    clip = read_video(save_gif(frames, tmp_path / "a.gif"), fps=10.0)
    assert len(clip.frames) == 5
    for got, want in zip(clip.frames, frames):
        np.testing.assert_array_equal(np.asarray(got.convert("RGB")), np.asarray(want))


@pytest.mark.parametrize("case", ["mp4", "missing", "corrupt_gif", "empty_folder", "bad_frame", "text_file"])
def test_bad_videos_raise_sample_errors(tmp_path, case):
    if case == "mp4":
        path, match = tmp_path / "clip.mp4", "ffmpeg -i clip.mp4"
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    elif case == "missing":
        path, match = tmp_path / "nope.gif", "does not exist"
    elif case == "corrupt_gif":
        path, match = tmp_path / "bad.gif", "cannot be decoded"
        path.write_bytes(b"GIF89a\x10\x00garbage")
    elif case == "empty_folder":
        path, match = tmp_path / "frames", "holds no image files"
        path.mkdir()
    elif case == "bad_frame":
        path, match = save_folder(solid_frames(2), tmp_path / "frames"), r"frame_2\.png.*cannot be decoded"
        (path / "frame_2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    else:
        path, match = tmp_path / "clip.txt", "not a frame folder or an animated image"
        path.write_text("x")
    with pytest.raises(SampleError, match=match):
        read_video(path)


def test_jsonl_video_rows_and_their_errors(tmp_path):
    save_folder(solid_frames(4), tmp_path / "clip")
    solid_frames(1)[0].save(tmp_path / "still.png")
    rows = [{"id": "v", "video": "clip", "question": "w1", "answer": "w2", "fps": 4, "max_frames": 2},
            {"id": "i", "image": "still.png", "question": "w3", "answers": ["w4"]}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    video, image = open_dataset("jsonl", str(path))
    assert video.is_video and not image.is_video
    clip = video.video
    assert len(clip.frames) == 2 and clip.fps == pytest.approx(2.0)
    assert video.preview.size == (84, 84) and image.preview.size == (84, 84)
    with pytest.raises(SampleError, match="is a video"):
        video.image
    with pytest.raises(SampleError, match="is an image, not a video"):
        image.video
    bad = {"both": ({"image": "a.png", "video": "clip"}, "give an image or a video, not both"),
           "neither": ({}, r"missing field\(s\) image \(or video\)"),
           "fps": ({"video": "clip", "fps": 0}, "'fps' must be a positive number"),
           "frames": ({"video": "clip", "max_frames": 1.5}, "'max_frames' must be a positive integer"),
           "image_fps": ({"image": "a.png", "fps": 2}, "'fps' / 'max_frames' belong to a video row"),
           "empty": ({"video": ""}, "video must be a non-empty path")}
    for name, (fields, match) in bad.items():
        path.write_text(json.dumps({"id": name, "question": "q", "answer": "a", **fields}) + "\n")
        with pytest.raises(ValueError, match=rf"data\.jsonl:1: {match}"):
            open_dataset("jsonl", str(path))


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen_video")
    F.build("qwen2_vl", folder)
    tokenizer = qt.tokenizer()
    tokenizer.chat_template = QWEN_TEMPLATE
    tokenizer.save_pretrained(folder)
    qt.image_processor("qwen2_vl").save_pretrained(folder)
    (folder / "video_preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 4 * FRAME, "longest_edge": 16 * FRAME}}))
    return folder


def test_processor_reads_the_folders_video_sizes(qwen_folder):
    processor = Processor.from_folder(qwen_folder)
    assert processor.video_pixels == (4 * FRAME, 16 * FRAME)
    prompt = processor.chat_prompt("w1 w2", video=True)
    assert prompt.count("<|video_pad|>") == 1 and "<|image_pad|>" not in prompt
    out = processor(None, [prompt], videos=[solid_frames(6, size=(112, 112))], video_fps=2.0)
    assert out["video_grid_thw"].tolist() == [[3, 8, 8]]  # 112x112 = 16 merged tokens, the cap


def test_sweep_over_image_and_video_rows(qwen_folder, tmp_path):
    """A JSONL of image rows, video rows (a frame folder, a GIF of another size and rate) and a corrupt
    video: the corrupt one fails with its reason, and every other row's prediction and visual-token count
    equal that row run alone through `jp.generate`."""
    save_folder(solid_frames(6), tmp_path / "clip_a")
    save_gif(solid_frames(4, size=(56, 112), seed=3), tmp_path / "clip_b.gif")
    (tmp_path / "broken.gif").write_bytes(b"GIF89a broken")
    qt.random_image(64, 64, seed=5).save(tmp_path / "im.png")
    rows = [{"id": "a", "video": "clip_a", "question": "w1 w2", "answer": "w3", "fps": 3},
            {"id": "im", "image": "im.png", "question": "w4", "answer": "w5"},
            {"id": "b", "video": "clip_b.gif", "question": "w6 w7 w8", "answer": "w9", "fps": 1.5},
            {"id": "bad", "video": "broken.gif", "question": "w1", "answer": "w2"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = open_dataset("jsonl", str(tmp_path / "data.jsonl"))
    model, processor = models.load(qwen_folder), Processor.from_folder(qwen_folder)
    pruners = [None, jp.pruner("hilo", keep_ratio=0.5, removal_layer=1)]
    summaries = sweep(model, processor, data, pruners, tmp_path / "out", batch_size=4, max_new_tokens=3,
                      prompt=bare_prompt(processor), progress=False)
    for summary, pruner in zip(summaries, pruners):
        assert summary["n_samples"] == 4 and summary["n_failed"] == 1
        records = {json.loads(x)["id"]: json.loads(x)
                   for x in (tmp_path / "out" / summary["name"] / "predictions.jsonl").read_text().splitlines()}
        assert not records["bad"]["ok"] and "broken.gif" in records["bad"]["error"]
        for i, sample in enumerate(data[:3]):
            alone = jp.generate(model, processor_inputs(processor, [sample], [bare_prompt(processor)(sample)]),
                                pruner, 3)
            text = processor.tokenizer.batch_decode(alone.tokens, skip_special_tokens=True)[0].strip()
            assert records[sample.id]["prediction"] == text, (summary["name"], sample.id)
            assert records[sample.id]["visual_tokens"] == int(alone.visual_tokens[0]), (summary["name"], sample.id)
    unpruned = {json.loads(x)["id"]: json.loads(x)["visual_tokens"]
                for x in (tmp_path / "out" / "unpruned" / "predictions.jsonl").read_text().splitlines() if "ok\": true" in x}
    assert unpruned["a"] == 3 * 9 and unpruned["b"] == 2 * 8  # temporal patches x merged tokens per frame
    assert (tmp_path / "out" / "report.html").is_file()


def test_video_row_on_a_model_without_video_input_fails_alone(tmp_path):
    folder = llava_folder(tmp_path / "llava")
    save_folder(solid_frames(2), tmp_path / "clip")
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "im.png")
    rows = [{"id": "im", "image": "im.png", "question": "what", "answer": "x"},
            {"id": "v", "video": "clip", "question": "what", "answer": "x"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = open_dataset("jsonl", str(tmp_path / "data.jsonl"))
    model, processor = models.load(folder), Processor.from_folder(folder)
    summary, = sweep(model, processor, data, [None], tmp_path / "out", batch_size=2, max_new_tokens=2,
                     prompt=bare_prompt(processor), progress=False)
    records = [json.loads(x) for x in (tmp_path / "out" / "unpruned" / "predictions.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert by_id["im"]["ok"] and not by_id["v"]["ok"] and "takes no video input" in by_id["v"]["error"]
    assert summary["n_failed"] == 1
