"""easy-VQA as conversations: all questions of one image packed into one multi-turn chat.

Packing encodes each image once per step and gives ~10 supervised answers per
sequence. Only answer tokens (and the eos closing them) carry loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class ImageQuestions:
    image_id: int
    path: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]


def _load(split: str):
    import easy_vqa

    if split == "train":
        return easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()
    if split == "test":
        return easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths()
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def questions_flat(split: str) -> list[tuple[int, str, str, str]]:
    """-> [(image_id, image_path, question, answer)] in the package's order."""
    (questions, answers, image_ids), paths = _load(split)
    return [(i, paths[i], q, a) for q, a, i in zip(questions, answers, image_ids)]


def grouped_by_image(split: str) -> list[ImageQuestions]:
    """-> one ImageQuestions per image (sorted by image id), questions in the package's order."""
    groups: dict[int, list] = {}
    paths = {}
    for image_id, path, q, a in questions_flat(split):
        groups.setdefault(image_id, []).append((q, a))
        paths[image_id] = path
    return [
        ImageQuestions(i, paths[i], tuple(q for q, _ in groups[i]), tuple(a for _, a in groups[i]))
        for i in sorted(groups)
    ]


@lru_cache(maxsize=None)
def load_image(path: str):
    """RGB PIL image (cached: the training split is ~50 MB decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def user_turn(question: str, with_image: bool) -> dict:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
    return {"role": "user", "content": content}


def conversation(questions, answers) -> list[dict]:
    """Multi-turn chat: the image rides in the first user turn only, every answer is an assistant turn."""
    if len(questions) != len(answers) or not questions:
        raise ValueError(f"need as many answers as questions (>0), got {len(questions)} and {len(answers)}")
    messages = []
    for n, (q, a) in enumerate(zip(questions, answers)):
        messages += [user_turn(q, with_image=n == 0), {"role": "assistant", "content": a}]
    return messages


def answer_mask(input_ids: np.ndarray, prompt_ids: list[int], eos_id: int) -> np.ndarray:
    """[B, T] True on each answer token and the eos that ends it (tokens after a generation prompt)."""
    ids = np.asarray(input_ids)
    mask = np.zeros(ids.shape, bool)
    k = len(prompt_ids)
    for b, row in enumerate(ids):
        inside = False
        for t in range(len(row)):
            if inside:
                mask[b, t] = True
                inside = row[t] != eos_id
            elif t >= k and list(row[t - k:t]) == list(prompt_ids):
                mask[b, t] = True
                inside = row[t] != eos_id
    return mask


def normalize_answer(text: str) -> str:
    """Lowercase, single spaces, no trailing punctuation: what exact match compares."""
    return " ".join(text.lower().replace("?", " ").replace(".", " ").split())
