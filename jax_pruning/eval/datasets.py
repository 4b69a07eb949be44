"""Datasets by name: `open_dataset("easy-vqa")`, `open_dataset("detail-vqa")`, `open_dataset("moving-shapes")`,
`open_dataset("jsonl", path)`, `open_dataset("pope", path)`.

All local: easy-VQA ships inside its PyPI package; detail-VQA is generated from
its seed (`detail_vqa.py`: small shapes and digits on a 128x128 canvas, answers
that depend on small detail), and so is moving-shapes (`motion_vqa.py`: 8-frame
clips whose answers need time); the JSONL format is ours
(one question per line beside an image folder); the lmms-lab benchmarks are
read from parquet files already on disk (see `parquet.py`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jax_pruning.eval.metrics import TASKS
from jax_pruning.eval.parquet import LAYOUTS, open_parquet
from jax_pruning.eval.samples import Dataset, Sample, choose_rows, image_from_file
from jax_pruning.eval.videos import video_from_path

DATASETS = ("easy-vqa", "detail-vqa", "moving-shapes", "jsonl", *LAYOUTS)
ALIASES = {"detail_vqa": "detail-vqa", "easy_vqa": "easy-vqa", "moving_shapes": "moving-shapes"}


def open_dataset(name: str, path: str | os.PathLike | None = None, *, split: str | None = None,
                 limit: int | None = None, seed: int | None = None, task: str | None = None) -> Dataset:
    """A dataset by name (one of DATASETS). `path` is required for all but the generated / packaged ones.

    `limit` keeps the first n samples, or with `seed` a random n (in file order).
    `task` sets the scoring task of a JSONL file (one of TASKS, default exact_match).
    """
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if name == "easy-vqa":
        return open_easy_vqa(split or "test", limit=limit, seed=seed)
    if name == "detail-vqa":
        from jax_pruning.eval.detail_vqa import open_detail_vqa

        return open_detail_vqa(split or "test", limit=limit, seed=seed)
    if name == "moving-shapes":
        from jax_pruning.eval.motion_vqa import open_motion_vqa

        return open_motion_vqa(split or "test", limit=limit, seed=seed)
    if path is None:
        raise ValueError(f"dataset {name!r} needs a path (a local folder or file)")
    if name == "jsonl":
        return open_jsonl(path, limit=limit, seed=seed, task=task or "exact_match")
    return open_parquet(name, path, split=split, limit=limit, seed=seed)


def open_easy_vqa(split: str = "test", *, limit: int | None = None, seed: int | None = None) -> Dataset:
    """easy-VQA (shapes and colours, 64x64 images) from the installed `easy-vqa` package."""
    import easy_vqa

    if split not in ("train", "test"):
        raise ValueError(f"easy-vqa: unknown split {split!r}; valid: train, test")
    questions, answers, image_ids = (easy_vqa.get_train_questions if split == "train"
                                     else easy_vqa.get_test_questions)()
    paths = (easy_vqa.get_train_image_paths if split == "train" else easy_vqa.get_test_image_paths)()

    def make(i: int) -> Sample:
        image_id = int(image_ids[i])
        path = paths.get(image_id, f"<easy-vqa {split} image {image_id} missing>")
        return Sample(id=f"easy-vqa-{split}-{i}", question=questions[i], answers=[answers[i]], task="exact_match",
                      load_image=image_from_file(path), meta={"dataset": "easy-vqa", "image_id": image_id})

    return Dataset("easy-vqa", choose_rows(len(questions), limit, seed).tolist(), make)


def open_jsonl(path: str | os.PathLike, *, images: str | os.PathLike | None = None, limit: int | None = None,
               seed: int | None = None, task: str = "exact_match") -> Dataset:
    """Lines of `{"id", "image" | "video", "question", "answers" | "answer", "choices"?}`.

    `image` / `video` are relative to `images` (default: the JSONL file's folder).
    A video is a folder of frames or an animated GIF / WebP / PNG (eval/videos.py),
    with optional `"fps"` (rate of the stored frames, default 2) and
    `"max_frames"` (sample that many evenly). Bad lines raise ValueError naming
    the file and line number; a video that does not decode fails its sample only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    folder = Path(images) if images is not None else path.parent
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err})") from None
        records.append(_check_record(record, f"{path}:{number}"))
    seen: set[str] = set()
    for record, where in records:
        if record["id"] in seen:
            raise ValueError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])

    def make(i: int) -> Sample:
        r, _ = records[i]
        if "video" in r:
            return Sample(id=r["id"], question=r["question"], answers=r["answers"], task=task,
                          load_video=video_from_path(folder / r["video"], r["fps"], r["max_frames"]),
                          choices=r.get("choices"), meta={"dataset": path.name, "video": r["video"]})
        return Sample(id=r["id"], question=r["question"], answers=r["answers"], task=task,
                      load_image=image_from_file(folder / r["image"]), choices=r.get("choices"),
                      meta={"dataset": path.name, "image": r["image"]})

    return Dataset(path.stem, choose_rows(len(records), limit, seed).tolist(), make)


def _check_record(record, where: str) -> tuple[dict, str]:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "question") if k not in record]
    if "image" not in record and "video" not in record:
        missing.append("image (or video)")
    if "answers" not in record and "answer" not in record:
        missing.append("answers (or answer)")
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    if "image" in record and "video" in record:
        raise ValueError(f"{where}: give an image or a video, not both")
    media = record.get("image", record.get("video"))
    if not isinstance(media, str) or not media:
        raise ValueError(f"{where}: {'image' if 'image' in record else 'video'} must be a non-empty path string")
    video = {}
    if "video" in record:
        fps, max_frames = record.get("fps", 2.0), record.get("max_frames")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < fps < float("inf")):
            raise ValueError(f"{where}: 'fps' must be a positive number, got {fps!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            raise ValueError(f"{where}: 'max_frames' must be a positive integer, got {max_frames!r}")
        video = {"fps": float(fps), "max_frames": max_frames}
    elif "fps" in record or "max_frames" in record:
        raise ValueError(f"{where}: 'fps' / 'max_frames' belong to a video row, this row has an image")
    answers = record.get("answers", record.get("answer"))
    answers = [answers] if isinstance(answers, str) else answers
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"{where}: 'answers' must be a non-empty list of strings (or 'answer' a string)")
    choices = record.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise ValueError(f"{where}: 'choices' must be a list of strings")
    out = dict(record, id=str(record["id"]), answers=answers, question=str(record["question"]), **video)
    return out, where
