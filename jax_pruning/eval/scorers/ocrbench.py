"""OCRBench: an answer found inside the reply scores 1; the total is out of 1000.

Follows lmms_eval/tasks/ocrbench/utils.py (ocrbench_process_results,
ocrbench_aggregate_accuracy) at EvolvingLMMs-Lab/lmms-eval commit
75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

The rule depends on the row's source `dataset` (the OCRBench column): for
HME100k (handwritten formulas) every space and newline is deleted from both
sides and case matters; for all others fullwidth ASCII is folded to ASCII
("Ａ１" -> "A1", ideographic space -> space), both are lower-cased, and a newline
counts as a space. Either way an answer that is a substring of the reply is
right, so a long reply that contains it scores.

Totals: points per `question_type` (the category), "text_recognition" adds the
first six categories (300 on the full set), "final_score" all ten (1000).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

FORMULA_DATASET = "HME100k"
RECOGNITION = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
               "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition")
CATEGORIES = RECOGNITION + ("Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
                            "Handwritten Mathematical Expression Recognition")
_FULLWIDTH_TO_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}


def _formula_form(text: str) -> str:
    return text.strip().replace("\n", " ").replace(" ", "")


def _text_form(text: str) -> str:
    return text.translate(_FULLWIDTH_TO_ASCII).lower().strip().replace("\n", " ")


def ocrbench(prediction: str, answers: Sequence[str] | str, *, dataset: str) -> float:
    """`answers`: the accepted answers (a string is one); `dataset`: the row's OCRBench source dataset."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    form = _formula_form if dataset == FORMULA_DATASET else _text_form
    reply = form(prediction.strip())
    return float(any(form(answer) in reply for answer in answers))


def ocrbench_totals(scores: Sequence[float], categories: Sequence[str]) -> dict:
    """Points per category, text_recognition and final_score (each sample's score is 0 or 1)."""
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown OCRBench question_type(s) {unknown}; valid: {', '.join(CATEGORIES)}")
    points = Counter()
    for score, category in zip(scores, categories, strict=True):
        points[category] += int(score)
    recognition = sum(points[c] for c in RECOGNITION)
    return {"final_score": recognition + sum(points[c] for c in CATEGORIES[len(RECOGNITION):]),
            "text_recognition": recognition, **{c: points[c] for c in CATEGORIES}}
