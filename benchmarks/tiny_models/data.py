"""easy-VQA / detail-VQA as conversations: all questions of one image packed into one multi-turn chat.

Packing encodes each image once per step and gives ~10 (easy-VQA) or ~20
(detail-VQA, every question the scene supports) supervised answers per
sequence. Only answer tokens (and the eos closing them) carry loss.

An image is named by a path: a file (easy-VQA) or `detail-vqa:<split>:<index>`
(rendered from its seed on each load; `load_image` reads both).
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
    kinds: tuple[str, ...] = ()  # detail-VQA: each question's type (for balanced sampling)


def _load(split: str):
    import easy_vqa

    if split == "train":
        return easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()
    if split == "test":
        return easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths()
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")


DETAIL_PREFIX = "detail-vqa:"


def detail_path(split: str, index: int) -> str:
    return f"{DETAIL_PREFIX}{split}:{index}"


def questions_flat(split: str, data: str = "easy-vqa", images: int | None = None) -> list[tuple[int, str, str, str]]:
    """-> [(image_id, image_path, question, answer)] in the dataset's order (easy-VQA: the package's;
    detail-VQA: the evaluation questions, one of each type per image, of the first `images` images)."""
    if data == "detail-vqa":
        from jax_pruning.eval import detail_vqa as dv

        n = dv.SPLIT_IMAGES[split] if images is None else images
        return [(i, detail_path(split, i), q.text, q.answer) for i in range(n)
                for q in dv.questions(dv.scene_of(split, i))]
    if data != "easy-vqa":
        raise ValueError(f"data must be 'easy-vqa' or 'detail-vqa', got {data!r}")
    (questions, answers, image_ids), paths = _load(split)
    return [(i, paths[i], q, a) for q, a, i in zip(questions, answers, image_ids)]


def detail_grouped(split: str, images: int, dense: bool = True) -> list[ImageQuestions]:
    """The first `images` detail-VQA images of a split, each with every question its scene supports (dense)."""
    from jax_pruning.eval import detail_vqa as dv

    out = []
    for i in range(images):
        qs = dv.questions(dv.scene_of(split, i), dense=dense)
        out.append(ImageQuestions(i, detail_path(split, i), tuple(q.text for q in qs), tuple(q.answer for q in qs),
                                  tuple(q.type for q in qs)))
    return out


def grouped_by_image(split: str, data: str = "easy-vqa", images: int | None = None) -> list[ImageQuestions]:
    """-> one ImageQuestions per image (sorted by image id), questions in the dataset's order.

    detail-VQA: the first `images` images (required), every question the scene supports."""
    if data == "detail-vqa":
        if images is None:
            raise ValueError("detail-vqa: say how many images (the generator has no natural end)")
        return detail_grouped(split, images)
    if data != "easy-vqa":
        raise ValueError(f"data must be 'easy-vqa' or 'detail-vqa', got {data!r}")
    groups: dict[int, list] = {}
    paths = {}
    for image_id, path, q, a in questions_flat(split):
        groups.setdefault(image_id, []).append((q, a))
        paths[image_id] = path
    return [
        ImageQuestions(i, paths[i], tuple(q for q, _ in groups[i]), tuple(a for _, a in groups[i]))
        for i in sorted(groups)
    ]


def scene_of_path(path: str):
    """The detail-VQA scene named by a `detail-vqa:<split>:<index>` path."""
    from jax_pruning.eval import detail_vqa as dv

    if not path.startswith(DETAIL_PREFIX):
        raise ValueError(f"not a detail-VQA image path: {path!r}")
    split, index = path[len(DETAIL_PREFIX):].split(":")
    return dv.scene_of(split, int(index))


def load_image(path: str):
    """RGB PIL image: an easy-VQA file (cached) or a detail-VQA scene (rendered; not cached)."""
    if path.startswith(DETAIL_PREFIX):
        from jax_pruning.eval import detail_vqa as dv

        return dv.image(scene_of_path(path))
    return _load_file(path)


@lru_cache(maxsize=None)
def _load_file(path: str):
    """RGB PIL image (cached: the easy-VQA training split is ~50 MB decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def balanced_pick(kinds, k: int | None, rng: np.random.Generator) -> list[int]:
    """Indices of up to k questions (all if None) drawn type by type: every round visits the types in a random
    order and takes an unused question of each, so each type is asked equally often whatever its count."""
    by_kind: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        by_kind.setdefault(kind, []).append(i)
    pools = [by_kind[kind] for kind in sorted(by_kind)]
    k = len(kinds) if k is None else min(k, len(kinds))
    out: list[int] = []
    while len(out) < k:
        for t in rng.permutation(len(pools)):
            left = [i for i in pools[t] if i not in out]
            if left:
                out.append(left[int(rng.integers(len(left)))])
            if len(out) == k:
                break
    return out


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
