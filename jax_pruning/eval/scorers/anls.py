"""DocVQA and InfographicVQA: ANLS (average normalised Levenshtein similarity), threshold 0.5.

Follows lmms_eval/api/metrics.py (`anls`, `levenshtein_distance`) as
lmms_eval/tasks/docvqa/docvqa_val.yaml and infovqa/infovqa_val.yaml use it, at
EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

Per answer: the edit distance between the lower-cased, whitespace-collapsed
prediction and answer, divided by the longer of the two *raw* strings (their
upper-cased lengths, as upstream: "ß" counts twice). The score is 1 - the
smallest such distance over the answers, set to 0 below 0.5 (0.5 itself stays).
"""

from __future__ import annotations

from typing import Sequence

THRESHOLD = 0.5


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: cost 1 each), one row at a time."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _collapsed(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, answers: Sequence[str] | str, threshold: float = THRESHOLD) -> float:
    """`answers`: the list of accepted answers (a single string is one answer)."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    if not answers:
        raise ValueError("ANLS needs at least one answer")
    prediction = prediction.strip()
    distances = []
    for answer in answers:
        longest = max(len(answer.upper()), len(prediction.upper()))
        steps = edit_distance(_collapsed(answer), _collapsed(prediction))
        distances.append(0.0 if longest == 0 else float(steps) / float(longest))
    similarity = 1 - min(distances)
    return float(similarity) if similarity >= threshold else 0.0
