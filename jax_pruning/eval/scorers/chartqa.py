"""ChartQA: relaxed accuracy (numbers within 5% of the answer, other answers exact up to case).

Follows lmms_eval/tasks/chartqa/utils.py (relaxed_correctness, taken from Qwen-VL)
at EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

Its quirks are kept: a number is whatever Python's float() reads ("1e3",
"1_000", " 7 ", "nan", "inf"; not "1,000"); a trailing "%" divides by 100 on
either side ("45%" is 0.45, so it does not match "45"); an answer of 0 (or not
a number) needs the same text; years get the 5% too ("2019" passes for "2020").
"""

from __future__ import annotations

MAX_RELATIVE_CHANGE = 0.05
HUMAN_SPLIT = "human_test"


def _number(text: str) -> float | None:
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def chartqa(prediction: str, answer: str) -> float:
    prediction = prediction.strip()
    predicted, target = _number(prediction), _number(answer)
    if predicted is None or not target:  # target None, 0.0 or -0.0: compare the text
        return float(prediction.lower() == answer.lower())
    return float(abs(predicted - target) / abs(target) <= MAX_RELATIVE_CHANGE)
