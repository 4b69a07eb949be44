"""Benchmark metrics, from each benchmark's official definition. Accuracies are percentages.

`score(task, predictions, samples)` dispatches on the task:
  vqa              VQA accuracy (10 annotators: min(#others matching / 3, 1), averaged over leave-one-out)
  exact_match      normalised prediction equals a normalised answer (GQA, easy-VQA)
  pope             accuracy, precision, recall, F1 (positive = "yes"), yes-ratio of the predictions
  mme              per category acc + acc+ (both questions of an image right); perception/cognition totals
  multiple_choice  the parsed option letter equals the answer letter (ScienceQA)
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from typing import Sequence

import numpy as np

from jax_pruning.eval.normalize import normalize_answer

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
PRIMARY_METRIC = {"vqa": "vqa_accuracy", "exact_match": "exact_match", "pope": "f1", "mme": "perception",
                  "multiple_choice": "accuracy"}


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction in [0, 1] (needs >= 2 answers: it is leave-one-out)."""
    if len(answers) < 2:
        raise ValueError(f"VQA accuracy needs several annotator answers, got {len(answers)}; "
                         "use exact_match for single-answer data")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    per_subset = [min(sum(g == pred for j, g in enumerate(gts) if j != i) / 3.0, 1.0) for i in range(len(gts))]
    return float(np.mean(per_subset))


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def parse_yes_no(prediction: str) -> str:
    """POPE's rule (LLaVA's eval_pope): first sentence; any word "no"/"not" -> "no", otherwise "yes"."""
    first = prediction.strip().split(".")[0].replace(",", "")
    words = first.lower().split()
    return "no" if ("no" in words or "not" in words) else "yes"


def pope_metrics(predictions: Sequence[str], answers: Sequence[str]) -> dict:
    pred = np.array([parse_yes_no(p) == "yes" for p in predictions])
    gold_words = [a.strip().lower().rstrip(".") for a in answers]
    bad = sorted({g for g in gold_words if g not in ("yes", "no")})
    if bad:
        raise ValueError(f"POPE answers must be yes/no, got {bad}")
    gold = np.array([g == "yes" for g in gold_words])
    tp, fp = int(np.sum(pred & gold)), int(np.sum(pred & ~gold))
    fn, tn = int(np.sum(~pred & gold)), int(np.sum(~pred & ~gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(pred)
    return {"accuracy": 100.0 * (tp + tn) / n, "precision": 100.0 * precision, "recall": 100.0 * recall,
            "f1": 100.0 * f1, "yes_ratio": 100.0 * (tp + fp) / n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def parse_mme(prediction: str) -> str:
    """MME's parser: "yes"/"no", "y"/"n", else "yes"/"no" among the first 4 characters, else "other"."""
    text = prediction.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def mme_scores(predictions: Sequence[str], answers: Sequence[str], categories: Sequence[str],
               image_ids: Sequence[str]) -> dict:
    """Per category acc + acc+ (in points, max 200); `perception` / `cognition` sum their categories."""
    right_by_image: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for pred, answer, category, image in zip(predictions, answers, categories, image_ids):
        right_by_image[category][image].append(parse_mme(pred) == answer.strip().lower().rstrip("."))
    out: dict = {}
    for category, images in sorted(right_by_image.items()):
        flat = [r for rs in images.values() for r in rs]
        acc = 100.0 * np.mean(flat)
        acc_plus = 100.0 * np.mean([all(rs) for rs in images.values()])
        out[f"{category}/acc"], out[f"{category}/acc_plus"] = float(acc), float(acc_plus)
        out[category] = float(acc + acc_plus)
    out["perception"] = float(sum(out[c] for c in MME_PERCEPTION if c in out))
    out["cognition"] = float(sum(out[c] for c in MME_COGNITION if c in out))
    return out


_LEADING_LETTER = re.compile(r"^\(?([A-Z])(?:[.):]|\s|$)")
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-Z])\b")


def parse_choice(prediction: str, choices: Sequence[str]) -> str | None:
    """The option letter of a reply ("B", "B.", "(B) ...", "The answer is B", or a choice's text), else None."""
    valid = string.ascii_uppercase[: len(choices)]
    text = prediction.strip()
    for pattern in (_LEADING_LETTER, _ANSWER_IS):
        found = pattern.search(text)
        if found and found.group(1) in valid:
            return found.group(1)
    normal = normalize_answer(text)
    matches = [valid[i] for i, c in enumerate(choices) if normalize_answer(c) == normal]
    return matches[0] if len(matches) == 1 else None


def score(task: str, predictions: Sequence[str], samples: Sequence) -> dict:
    """Metrics of one run: `predictions[i]` is the reply to `samples[i]` (objects with answers/choices/meta)."""
    if len(predictions) != len(samples):
        raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
    if task not in PRIMARY_METRIC:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(PRIMARY_METRIC)}")
    n = len(samples)
    if n == 0:
        return {"n": 0}
    if task == "vqa":
        out = {"vqa_accuracy": 100.0 * np.mean([vqa_accuracy(p, s.answers) for p, s in zip(predictions, samples)])}
    elif task == "exact_match":
        out = {"exact_match": 100.0 * np.mean([exact_match(p, s.answers) for p, s in zip(predictions, samples)])}
    elif task == "pope":
        out = pope_metrics(predictions, [s.answers[0] for s in samples])
        by_category = defaultdict(list)
        for i, s in enumerate(samples):
            if s.meta.get("category"):
                by_category[s.meta["category"]].append(i)
        for category, rows in sorted(by_category.items()):
            part = pope_metrics([predictions[i] for i in rows], [samples[i].answers[0] for i in rows])
            out.update({f"{category}/{k}": part[k] for k in ("accuracy", "f1")})
    elif task == "mme":
        out = mme_scores(predictions, [s.answers[0] for s in samples], [s.meta["category"] for s in samples],
                         [s.meta.get("image_id", s.id) for s in samples])
    else:
        right = [parse_choice(p, s.choices or []) == s.answers[0].strip() for p, s in zip(predictions, samples)]
        out = {"accuracy": 100.0 * np.mean(right)}
    return {**{k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in out.items()}, "n": n}
