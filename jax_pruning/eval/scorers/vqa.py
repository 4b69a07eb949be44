"""VQA accuracy as lmms-eval scores VQAv2, TextVQA, OK-VQA and VizWiz-VQA.

`answers` is the list of annotator answers (10 in these datasets). Each
annotator is left out in turn; the prediction scores min(#other annotators
giving the same normal form / 3, 1); the score is the mean over the turns.

The tasks differ only in the normal form (scorers/evalai.py):
- vqav2: lmms_eval/tasks/vqav2/utils.py (vqav2_process_results) normalises
  prediction and answers with process_punctuation + process_digit_article
  (always: unanimous or not, since lmms-eval commit 28ea9a11, Aug 2025);
- textvqa, ok_vqa, vizwiz_vqa: lmms_eval/tasks/{textvqa,ok_vqa,vizwiz_vqa}/utils.py
  call the whole EvalAIAnswerProcessor on both, which first drops "," and "?"
  and splits off "'s".
All at EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.
The prediction is stripped first, as lmms-eval's harness does.

Differences on purpose: fewer than 2 answers raise ValueError (lmms-eval gives 0
for one answer, since nobody is left to agree, or fails on none); VQAv2
annotator records are told apart by position (upstream compares the answer dicts,
which differ by their answer_id).
"""

from __future__ import annotations

import statistics
from typing import Callable, Sequence

from jax_pruning.eval.scorers.evalai import full_normal_form, vqav2_normal_form


def leave_one_out_accuracy(prediction: str, answers: Sequence[str], normal_form: Callable[[str], str]) -> float:
    if isinstance(answers, str) or len(answers) < 2:
        raise ValueError(f"VQA accuracy needs several annotator answers (a list), got {answers!r}")
    predicted = normal_form(prediction.strip())
    normal = [normal_form(a) for a in answers]
    per_turn = [min(1, float(sum(a == predicted for j, a in enumerate(normal) if j != left_out)) / 3)
                for left_out in range(len(normal))]
    return float(statistics.mean(per_turn))  # statistics.mean, as upstream: the same float to the last bit


def vqav2(prediction: str, answers: Sequence[str]) -> float:
    return leave_one_out_accuracy(prediction, answers, vqav2_normal_form)


def textvqa(prediction: str, answers: Sequence[str]) -> float:
    """Also OK-VQA's and VizWiz-VQA's scorer: their utils.py are the same code."""
    return leave_one_out_accuracy(prediction, answers, full_normal_form)
