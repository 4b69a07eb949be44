"""Benchmark metrics: each task scored exactly as lmms-eval scores it (the rules live in eval/scorers/).

    score_one(task, prediction, answers, **context) -> float in [0, 1]      one sample
    score(task, predictions, samples) -> dict              a run (percentages; MME and OCRBench in points)

task            answers                                 context       metrics (primary first)
vqav2           the annotator answers (list, >= 2)                    vqa_accuracy
textvqa         "                                                     vqa_accuracy
ok_vqa          "                                                     vqa_accuracy
vizwiz_vqa      "                                                     vqa_accuracy
gqa             the answer (a string or a 1-item list)                exact_match
pope            "yes" / "no"                                          f1, accuracy, precision, recall, yes_ratio
mme             "Yes" / "No"                                          perception, cognition, per category
scienceqa_img   the option letter ("B")                               accuracy
docvqa          the accepted answers (list or string)                 anls
infovqa         "                                                     anls
chartqa         the answer                                            relaxed_overall, relaxed_{human,augmented}_split
ocrbench        the accepted answers                    dataset=      final_score, text_recognition, per category

Samples give score() their answers (`sample.answers`) and context: MME's
`meta["category"]`, `meta["image_id"]`; POPE's optional `meta["category"]`;
ChartQA's `meta["type"]`; OCRBench's `meta["source_dataset"]` (HME100k has its
own rule) and `meta["category"]` (the question_type).

Generic names, for JSONL files and older runs: "vqa" is scored as vqav2 and
"multiple_choice" as scienceqa_img; "exact_match" (easy-VQA, the JSONL default)
is ours, not an lmms-eval task: the prediction's VQAv2 normal form equals an
answer's.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np

from jax_pruning.eval.scorers import anls, chartqa, choice, exact, ocrbench, vqa, yes_no
from jax_pruning.eval.scorers.evalai import vqav2_normal_form


def only_answer(answers: Sequence[str] | str, task: str) -> str:
    """The one reference answer of a single-answer task (a string, or a list holding one)."""
    if isinstance(answers, str):
        return answers
    if len(answers) != 1:
        raise ValueError(f"{task} takes one answer, got {len(answers)}: {list(answers)!r}")
    return answers[0]


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """Our easy-VQA / JSONL rule: the VQAv2 normal form of the prediction equals that of some answer."""
    predicted = vqav2_normal_form(prediction)
    return float(any(predicted == vqav2_normal_form(a) for a in answers))


def _single(rule: Callable[[str, str], float], task: str) -> Callable[..., float]:
    return lambda prediction, answers: rule(prediction, only_answer(answers, task))


@dataclasses.dataclass(frozen=True)
class Task:
    one: Callable[..., float]  # (prediction, answers, **context) -> [0, 1]
    primary: str
    aggregate: str = "mean"  # how score() combines: mean | pope | mme | chartqa | ocrbench


TASK_SPECS: dict[str, Task] = {
    "vqav2": Task(vqa.vqav2, "vqa_accuracy"),
    "textvqa": Task(vqa.textvqa, "vqa_accuracy"),
    "ok_vqa": Task(vqa.textvqa, "vqa_accuracy"),
    "vizwiz_vqa": Task(vqa.textvqa, "vqa_accuracy"),
    "gqa": Task(_single(exact.gqa, "gqa"), "exact_match"),
    "pope": Task(_single(yes_no.pope, "pope"), "f1", "pope"),
    "mme": Task(_single(yes_no.mme, "mme"), "perception", "mme"),
    "scienceqa_img": Task(_single(choice.scienceqa_img, "scienceqa_img"), "accuracy"),
    "docvqa": Task(anls.anls, "anls"),
    "infovqa": Task(anls.anls, "anls"),
    "chartqa": Task(_single(chartqa.chartqa, "chartqa"), "relaxed_overall", "chartqa"),
    "ocrbench": Task(ocrbench.ocrbench, "final_score", "ocrbench"),
    # generic names
    "vqa": Task(vqa.vqav2, "vqa_accuracy"),
    "multiple_choice": Task(_single(choice.scienceqa_img, "multiple_choice"), "accuracy"),
    "exact_match": Task(exact_match, "exact_match"),
}
TASKS = tuple(TASK_SPECS)
PRIMARY_METRIC = {name: spec.primary for name, spec in TASK_SPECS.items()}
MME_PERCEPTION, MME_COGNITION = yes_no.MME_PERCEPTION, yes_no.MME_COGNITION
pope_metrics, mme_scores, parse_mme = yes_no.pope_metrics, yes_no.mme_scores, yes_no.parse_mme


def _spec(task: str) -> Task:
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return TASK_SPECS[task]


def score_one(task: str, prediction: str, answers, **context) -> float:
    """lmms-eval's score of one reply in [0, 1]; `answers` and `context` per task: see the module docstring."""
    return float(_spec(task).one(prediction, answers, **context))


def _context(task: str, sample) -> dict:
    if task != "ocrbench":
        return {}
    if "source_dataset" not in sample.meta:
        raise ValueError(f"OCRBench sample {sample.id!r} has no meta['source_dataset'] (the OCRBench 'dataset' column)")
    return {"dataset": sample.meta["source_dataset"]}


def _per_sample(task: str, predictions: Sequence[str], samples: Sequence) -> list[float]:
    one = _spec(task).one
    return [float(one(p, s.answers, **_context(task, s))) for p, s in zip(predictions, samples)]


def score_each(task: str, predictions: Sequence[str], samples: Sequence) -> list[float]:
    """Each reply's lmms-eval score in [0, 1] (what the report marks right / wrong)."""
    _spec(task)
    return _per_sample(task, predictions, samples)


def _pope(predictions: Sequence[str], samples: Sequence) -> dict:
    answers = [only_answer(s.answers, "pope") for s in samples]
    out = pope_metrics(predictions, answers)
    by_category = defaultdict(list)
    for i, s in enumerate(samples):
        if s.meta.get("category"):
            by_category[s.meta["category"]].append(i)
    for category, rows in sorted(by_category.items()):
        part = pope_metrics([predictions[i] for i in rows], [answers[i] for i in rows])
        out.update({f"{category}/{k}": part[k] for k in ("accuracy", "f1")})
    return out


def _chartqa(scores: list[float], samples: Sequence) -> dict:
    human = [s.meta.get("type") == chartqa.HUMAN_SPLIT for s in samples]
    out = {"relaxed_overall": 100.0 * np.mean(scores)}
    for name, rows in (("relaxed_human_split", [x for x, h in zip(scores, human) if h]),
                       ("relaxed_augmented_split", [x for x, h in zip(scores, human) if not h])):
        if rows:
            out[name] = 100.0 * np.mean(rows)
    return out


def score(task: str, predictions: Sequence[str], samples: Sequence) -> dict:
    """Metrics of one run: `predictions[i]` is the reply to `samples[i]` (objects with answers/meta/id)."""
    spec = _spec(task)
    if len(predictions) != len(samples):
        raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
    n = len(samples)
    if n == 0:
        return {"n": 0}
    if spec.aggregate == "pope":
        out = _pope(predictions, samples)
    elif spec.aggregate == "mme":
        out = mme_scores(predictions, [only_answer(s.answers, "mme") for s in samples],
                         [s.meta["category"] for s in samples], [s.meta.get("image_id", s.id) for s in samples])
    elif spec.aggregate == "chartqa":
        out = _chartqa(_per_sample(task, predictions, samples), samples)
    elif spec.aggregate == "ocrbench":
        out = ocrbench.ocrbench_totals(_per_sample(task, predictions, samples),
                                       [s.meta.get("category", "") for s in samples])
    else:
        out = {spec.primary: 100.0 * np.mean(_per_sample(task, predictions, samples))}
    return {**{k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in out.items()}, "n": n}
