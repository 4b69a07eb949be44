"""POPE and MME: yes/no questions, scored as lmms-eval does.

POPE follows lmms_eval/tasks/pope/utils.py and MME lmms_eval/tasks/mme/utils.py
at EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

POPE is strict: the reply, stripped and lower-cased, must be exactly "yes" or
"no" ("Yes." and "No, there is not." are neither, and count as wrong). Precision
counts replies "yes"; recall's misses are only replies exactly "no", so a reply
that is neither lowers accuracy but not recall. (Upstream's `pope_yes_ratio` is
the share of "yes" *answers*, a property of the data; our `yes_ratio` is the
share of "yes" replies, as LLaVA reports it.)

MME parses the reply (Otter's rule: "yes"/"no", "y"/"n", else "yes" or "no"
among its first 4 characters) and scores a category as the mean over its images
of acc + acc+ (both questions of the image right), 200 points at most.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def _yes_no_answer(answer: str, task: str, drop_periods: bool) -> str:
    gold = answer.lower().strip()
    gold = gold.replace(".", "") if drop_periods else gold
    if gold not in ("yes", "no"):
        raise ValueError(f"{task} answers must be yes/no, got {answer!r}")
    return gold


def pope(prediction: str, answer: str) -> float:
    return float(prediction.strip().lower() == _yes_no_answer(answer, "POPE", drop_periods=False))


def pope_metrics(predictions: Sequence[str], answers: Sequence[str]) -> dict:
    """lmms-eval's accuracy, precision, recall, F1 (as percentages), our yes_ratio, and the counts."""
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "other": 0}
    for prediction, answer in zip(predictions, answers, strict=True):
        reply, gold = prediction.strip().lower(), _yes_no_answer(answer, "POPE", drop_periods=False)
        if reply not in ("yes", "no"):
            counts["other"] += 1
        else:
            counts[("t" if reply == gold else "f") + ("p" if reply == "yes" else "n")] += 1
    n = len(predictions)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * (precision * recall) / (precision + recall) if precision + recall > 0 else 0.0
    return {"accuracy": 100.0 * (tp + counts["tn"]) / n, "precision": 100.0 * precision,
            "recall": 100.0 * recall, "f1": 100.0 * f1, "yes_ratio": 100.0 * (tp + fp) / n, **counts}


def parse_mme(prediction: str) -> str:
    """"yes", "no" or "other" (Otter's parser, as lmms-eval's parse_pred_ans)."""
    text = prediction.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def mme(prediction: str, answer: str) -> float:
    return float(parse_mme(prediction.strip()) == _yes_no_answer(answer, "MME", drop_periods=True))


def mme_scores(predictions: Sequence[str], answers: Sequence[str], categories: Sequence[str],
               image_ids: Sequence[str]) -> dict:
    """Per category acc, acc+ and their sum; `perception` / `cognition` add up their categories.

    Any category not in MME's perception list counts as cognition, as upstream.
    Upstream requires exactly 2 questions per image; here an image may have any
    number (a subset run), and with pairs the result is the same.
    """
    right: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for prediction, answer, category, image in zip(predictions, answers, categories, image_ids, strict=True):
        right[category][image].append(mme(prediction, answer))
    out: dict = {}
    for category, images in sorted(right.items()):
        acc = sum(100.0 * sum(s) / len(s) for s in images.values()) / len(images)
        acc_plus = sum(100.0 * all(s) for s in images.values()) / len(images)
        out[f"{category}/acc"], out[f"{category}/acc_plus"], out[category] = acc, acc_plus, acc + acc_plus
    perception = [c for c in right if c in MME_PERCEPTION]
    out["perception"] = sum(out[c] for c in perception)
    out["cognition"] = sum(out[c] for c in right if c not in MME_PERCEPTION)
    return out
