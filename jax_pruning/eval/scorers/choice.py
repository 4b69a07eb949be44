"""ScienceQA-IMG: the option letter, as lmms-eval (LLaVA's rule) reads it.

Follows lmms_eval/tasks/scienceqa/utils.py (sqa_process_results) at
EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
right when the stripped reply is the letter in any case ("b"), or starts with
an upper-case letter and a period and that letter is the answer ("B. dog").
Nothing else is read: "(B)", "B)", "The answer is B" and the option's text are
wrong.
"""

from __future__ import annotations


def scienceqa_img(prediction: str, letter: str) -> float:
    """`letter` is the answer's option letter ("A" for choice 0)."""
    target = letter.strip().lower()
    reply = prediction.strip()
    if reply.lower() == target:
        return 1.0
    starts_with_letter_period = len(reply) >= 2 and reply[0].isupper() and reply[1] == "."
    return float(starts_with_letter_period and reply[0].lower() == target)
