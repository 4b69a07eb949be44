"""Each task's scorer equals lmms-eval's, checked against an independent transcription of its code
(tests/reference/lmms_eval_*.py) on hand-made cases (tests/eval/scorer_cases.py)."""

from __future__ import annotations

import types

import pytest

from jax_pruning.eval.metrics import TASKS, score, score_one
from jax_pruning.eval.prompts import INSTRUCTIONS
from tests.eval import scorer_cases as cases
from tests.reference import lmms_eval_scoring as ref
from tests.reference.lmms_eval_vqa import vqa_task_score
from tests.reference.old_vqa_rule import old_vqa_accuracy

VQA_TASKS = ("vqav2", "textvqa", "ok_vqa", "vizwiz_vqa")


@pytest.mark.parametrize("task", VQA_TASKS)
@pytest.mark.parametrize("prediction, answers", cases.VQA)
def test_vqa_accuracy_equals_lmms_eval(task, prediction, answers):
    assert score_one(task, prediction, answers) == vqa_task_score(task, prediction, answers)


@pytest.mark.parametrize("prediction, answer", cases.GQA)
def test_gqa_equals_lmms_eval(prediction, answer):
    assert score_one("gqa", prediction, answer) == ref.gqa_score(prediction, answer)
    assert score_one("gqa", prediction, [answer]) == ref.gqa_score(prediction, answer)


@pytest.mark.parametrize("prediction, answer", cases.POPE)
def test_pope_equals_lmms_eval(prediction, answer):
    assert score_one("pope", prediction, answer) == ref.pope_score(prediction, answer)


@pytest.mark.parametrize("prediction, answer", cases.MME)
def test_mme_equals_lmms_eval(prediction, answer):
    assert score_one("mme", prediction, answer) == ref.mme_score(prediction, answer)


@pytest.mark.parametrize("prediction, letter", cases.SCIENCEQA)
def test_scienceqa_img_equals_lmms_eval(prediction, letter):
    assert score_one("scienceqa_img", prediction, letter) == ref.sqa_score(prediction, letter)


@pytest.mark.parametrize("task", ("docvqa", "infovqa"))
@pytest.mark.parametrize("prediction, answers", cases.ANLS)
def test_anls_equals_lmms_eval(task, prediction, answers):
    assert score_one(task, prediction, answers) == ref.anls_score(prediction, answers)


@pytest.mark.parametrize("prediction, answer", cases.CHARTQA)
def test_chartqa_equals_lmms_eval(prediction, answer):
    assert score_one("chartqa", prediction, answer) == ref.chartqa_score(prediction, answer)["relaxed_overall"]


@pytest.mark.parametrize("prediction, answers, dataset", cases.OCRBENCH)
def test_ocrbench_equals_lmms_eval(prediction, answers, dataset):
    assert score_one("ocrbench", prediction, answers, dataset=dataset) == ref.ocrbench_score(
        prediction, answers, dataset)


def test_cases_cover_every_task_sixty_times():
    per_task = {**{t: len(cases.VQA) for t in VQA_TASKS}, "gqa": len(cases.GQA), "pope": len(cases.POPE),
                "mme": len(cases.MME), "scienceqa_img": len(cases.SCIENCEQA), "docvqa": len(cases.ANLS),
                "infovqa": len(cases.ANLS), "chartqa": len(cases.CHARTQA), "ocrbench": len(cases.OCRBENCH)}
    assert min(per_task.values()) >= 60, per_task
    assert set(per_task) | {"vqa", "multiple_choice", "exact_match"} == set(TASKS)


def test_the_cases_exercise_both_outcomes():
    """A case list whose scores are all equal could not catch a scorer that ignores its input."""
    outcomes = {
        "vqav2": {vqa_task_score("vqav2", p, a) for p, a in cases.VQA},
        "textvqa": {vqa_task_score("textvqa", p, a) for p, a in cases.VQA},
        "gqa": {ref.gqa_score(p, a) for p, a in cases.GQA},
        "pope": {ref.pope_score(p, a) for p, a in cases.POPE},
        "mme": {ref.mme_score(p, a) for p, a in cases.MME},
        "scienceqa_img": {ref.sqa_score(p, a) for p, a in cases.SCIENCEQA},
        "anls": {ref.anls_score(p, a) for p, a in cases.ANLS},
        "chartqa": {ref.chartqa_score(p, a)["relaxed_overall"] for p, a in cases.CHARTQA},
        "ocrbench": {ref.ocrbench_score(p, a, d) for p, a, d in cases.OCRBENCH},
    }
    for task, seen in outcomes.items():
        assert {0.0, 1.0} <= seen, task
    assert len(outcomes["vqav2"]) >= 4 and 0.5 in outcomes["anls"] and len(outcomes["anls"]) >= 8
    differs = [(p, a) for p, a in cases.VQA if vqa_task_score("vqav2", p, a) != vqa_task_score("textvqa", p, a)]
    assert len(differs) >= 5  # the two normal forms really are different rules


TRICKY = [("shes", ["she's"] * 10), ("couldntve", ["couldn't've"] * 10), ("idve", ["i'd've"] * 10),
          ("1,,000", ["1 000"] * 10), ("." * 33 + "yes", ["yes"] * 10), ("shes", ["she's"] * 3 + ["her"] * 7)]


@pytest.mark.parametrize("prediction, answers", TRICKY)
def test_the_old_rule_inflated_vqav2_and_the_new_scorer_does_not(prediction, answers):
    lmms_eval = vqa_task_score("vqav2", prediction, answers)
    assert old_vqa_accuracy(prediction, answers) > lmms_eval
    assert score_one("vqav2", prediction, answers) == lmms_eval


def test_the_old_rule_inflated_textvqa_on_s():
    answers = ["hes"] * 10  # "hes" -> "he's" by the table; the prediction's "'s" is split off
    assert old_vqa_accuracy("he's", answers) == 1.0
    assert score_one("textvqa", "he's", answers) == vqa_task_score("textvqa", "he's", answers) == 0.0


def test_pope_aggregate_equals_lmms_eval():
    replies = ["yes", "Yes.", "no", "No", "yes", "maybe", "no", "yes", " YES ", "no, there is not"]
    answers = ["yes", "yes", "yes", "no", "no", "no", "no", "yes", "yes", "yes"]
    samples = [types.SimpleNamespace(answers=[a], meta={}, id=str(i)) for i, a in enumerate(answers)]
    got, want = score("pope", replies, samples), ref.pope_aggregate(replies, answers)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert got[key] == pytest.approx(100 * want[key]), key
    assert got["other"] == 3 and got["yes_ratio"] == pytest.approx(40.0)


def test_mme_aggregate_equals_lmms_eval():
    rows = [("Yes", "Yes", "color", "c1"), ("No", "No", "color", "c1"), ("yes", "Yes", "color", "c2"),
            ("yes", "No", "color", "c2"), ("Maybe", "No", "OCR", "o1"), ("No.", "No", "OCR", "o1"),
            ("y", "Yes", "code_reasoning", "r1"), ("n", "Yes", "code_reasoning", "r1"),
            ("No", "No", "my_new_category", "m1"), ("Yes", "Yes", "my_new_category", "m1")]
    preds, answers, categories, images = zip(*rows)
    samples = [types.SimpleNamespace(answers=[a], meta={"category": c, "image_id": im}, id=f"{im}-{i}")
               for i, (_, a, c, im) in enumerate(rows)]
    got, want = score("mme", list(preds), samples), ref.mme_aggregate(preds, answers, categories, images)
    assert got["perception"] == pytest.approx(want["perception"]) == 125.0 + 50.0
    assert got["cognition"] == pytest.approx(want["cognition"]) == 50.0 + 200.0


def test_chartqa_splits_and_docvqa_mean():
    rows = [("12", "12", "human_test"), ("13", "12", "human_test"), ("Paris", "paris", "augmented_test")]
    samples = [types.SimpleNamespace(answers=[a], meta={"type": t}, id=str(i)) for i, (_, a, t) in enumerate(rows)]
    got = score("chartqa", [r[0] for r in rows], samples)
    assert got == {"relaxed_overall": pytest.approx(200 / 3), "relaxed_human_split": 50.0,
                   "relaxed_augmented_split": 100.0, "n": 3}
    samples = [types.SimpleNamespace(answers=["abcd", "x"], meta={}, id="0")] * 2
    assert score("docvqa", ["ab", "abcd"], samples) == {"anls": 75.0, "n": 2}


def test_ocrbench_totals_equal_lmms_eval():
    replies, answers, datasets, categories = [], [], [], []
    for k, (category, dataset) in enumerate(cases.OCRBENCH_CATEGORIES):
        for j in range(k + 1):  # category k gets k + 1 questions, j of them right
            replies.append("the formula x^{2}" if j else "nothing")
            answers.append(["x ^ { 2 }"] if dataset == "HME100k" else ["X^{2}"])
            datasets.append(dataset)
            categories.append(category)
    samples = [types.SimpleNamespace(answers=a, meta={"category": c, "source_dataset": d}, id=str(i))
               for i, (a, c, d) in enumerate(zip(answers, categories, datasets))]
    got = score("ocrbench", replies, samples)
    items = [ref.ocrbench_process_results({"answer": a, "dataset": d, "question_type": c}, [r])["ocrbench_accuracy"]
             for r, a, d, c in zip(replies, answers, datasets, categories)]
    want = ref.ocrbench_aggregate_accuracy(items)
    assert got == {**want, "n": len(replies)}
    assert got["final_score"] == sum(range(10)) and got["text_recognition"] == sum(range(6))


def test_bad_calls_are_named():
    with pytest.raises(ValueError, match="several annotator answers"):
        score_one("vqav2", "x", ["x"])
    with pytest.raises(ValueError, match="gqa takes one answer"):
        score_one("gqa", "x", ["x", "y"])
    with pytest.raises(ValueError, match="POPE answers must be yes/no"):
        score_one("pope", "yes", "maybe")
    with pytest.raises(ValueError, match="ANLS needs at least one answer"):
        score_one("docvqa", "x", [])
    with pytest.raises(TypeError, match="dataset"):
        score_one("ocrbench", "x", ["x"])
    with pytest.raises(ValueError, match="unknown task 'vqa3'; valid: vqav2"):
        score_one("vqa3", "x", ["x"])
    with pytest.raises(ValueError, match="source_dataset"):
        score("ocrbench", ["x"], [types.SimpleNamespace(answers=["x"], meta={"category": "Doc-oriented VQA"}, id="0")])
    with pytest.raises(ValueError, match="unknown OCRBench question_type"):
        score("ocrbench", ["x"], [types.SimpleNamespace(answers=["x"], meta={"category": "?", "source_dataset": "a"},
                                                         id="0")])


def test_every_task_has_a_prompt():
    assert set(TASKS) == set(INSTRUCTIONS)
