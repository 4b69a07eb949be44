"""Metrics against hand-computed cases written from lmms-eval's definitions (tests/eval/test_scorers.py
checks them against a transcription of its code)."""

from __future__ import annotations

import types

import pytest

from jax_pruning.eval.metrics import exact_match, mme_scores, parse_mme, pope_metrics, score, score_one
from jax_pruning.eval.scorers.evalai import vqav2_normal_form


@pytest.mark.parametrize("raw, want", [
    ("Yes.", "yes"),
    ("black-and-white", "black and white"),  # '-' touches no space: becomes a space
    ("yes, it is", "yes it is"),  # ',' touches a space: deleted
    ("1,000", "1000"),  # digit,digit: every punctuation mark deleted
    ("3.5", "3.5"),  # a period before a digit stays
    ("Dr. Who", "dr who"),
    ("Two dogs", "2 dogs"),
    ("none", "0"),
    ("The cat", "cat"),
    ("an apple a day", "apple day"),
    ("dont", "don't"),
    ("couldntve", "couldntve"),  # not a spelling in lmms-eval's table (the old rule rewrote it)
    ("couldnt've", "couldn't've"),
    ("lets go", "lets go"),  # an English word: not rewritten
    ('"quoted"\n', "quoted"),
    ("up/down", "up down"),
])
def test_normalisation(raw, want):
    assert vqav2_normal_form(raw) == want


def test_vqa_accuracy_leave_one_out():
    vqa_accuracy = lambda prediction, answers: score_one("vqav2", prediction, answers)  # noqa: E731
    # 3+ matches among every 9-answer subset -> 1
    assert vqa_accuracy("Yes.", ["yes"] * 4 + ["no"] * 6) == 1.0
    # 2 matches: 2 subsets (a 'red' left out) see 1 -> 1/3, 8 subsets see 2 -> 2/3: (2/3 + 16/3) / 10
    assert vqa_accuracy("red", ["red"] * 2 + ["blue"] * 8) == pytest.approx(0.6)
    # 1 match ('the cat' -> 'cat'): 9 subsets see 1 -> 1/3, the other sees 0: 3/10
    assert vqa_accuracy("the cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("Two", ["2"] * 3 + ["3"] * 7) == pytest.approx((3 * (2 / 3) + 7 * 1.0) / 10)
    assert vqa_accuracy("green", ["red"] * 10) == 0.0
    with pytest.raises(ValueError, match="several annotator answers"):
        vqa_accuracy("x", ["x"])


def test_exact_match():
    assert exact_match("The Circle.", ["circle"]) == 1.0
    assert exact_match("circles", ["circle"]) == 0.0
    assert exact_match("two", ["2", "3"]) == 1.0


def test_pope_hand_case():
    # lmms-eval reads only an exact "yes" / "no": the three sentences are neither (LLaVA's parser,
    # used before, read them as no / yes / yes: TP 2, FN 1, FP 1, TN 1, accuracy 60)
    gold = ["yes", "yes", "yes", "no", "no", "yes"]
    preds = ["Yes", "No, there is not.", "yes.", "Yes, there is a dog", "no", " NO "]
    got = pope_metrics(preds, gold)  # TP 1, FN 1, TN 1, 3 other
    assert (got["tp"], got["fn"], got["fp"], got["tn"], got["other"]) == (1, 1, 0, 1, 3)
    assert got["accuracy"] == pytest.approx(100 / 3)
    assert got["precision"] == pytest.approx(100.0)
    assert got["recall"] == pytest.approx(50.0)  # the 2 unreadable replies to "yes" are not misses
    assert got["f1"] == pytest.approx(200 / 3)
    assert got["yes_ratio"] == pytest.approx(100 / 6)
    with pytest.raises(ValueError, match="yes/no"):
        pope_metrics(["yes"], ["maybe"])


def test_mme_acc_plus():
    assert [parse_mme(p) for p in ["Yes.", "n", "No, it is not", "Maybe", "x"]] == ["yes", "no", "no", "other", "other"]
    preds = ["Yes", "No", "yes", "yes", "No"] + ["yes", "no"]
    answers = ["Yes", "No", "Yes", "No", "No"] + ["Yes", "Yes"]
    categories = ["color"] * 4 + ["OCR"] + ["code_reasoning"] * 2
    images = ["c1", "c1", "c2", "c2", "o1", "r1", "r1"]
    got = mme_scores(preds, answers, categories, images)
    # color: 3/4 right (75), 1 of 2 images fully right (50) -> 125; OCR: one image, one question, right -> 200
    assert got["color/acc"] == 75.0 and got["color/acc_plus"] == 50.0 and got["color"] == 125.0
    assert got["OCR"] == 200.0
    assert got["perception"] == 325.0
    assert got["code_reasoning"] == 50.0 and got["cognition"] == 50.0


def test_multiple_choice_letters():
    """LLaVA's / lmms-eval's ScienceQA rule: the letter alone, or "X." at the start; nothing else is read."""
    right = lambda reply, letter: score_one("multiple_choice", reply, letter)  # noqa: E731
    assert right("B", "B") == right("b", "B") == right("A. cat", "A") == right("C.", "C") == 1.0
    # the old parser also read these three as right
    assert right("(C) fish", "C") == right("The answer is B.", "B") == right("dog", "B") == 0.0
    assert right("D", "B") == right("I think so", "A") == right("a. cat", "B") == 0.0


def _s(answers, choices=None, **meta):
    return types.SimpleNamespace(answers=answers, choices=choices, meta=meta, id=str(id(answers)))


def test_score_dispatch():
    got = score("multiple_choice", ["A", "c", "B."], [_s(["A"], ["x", "y"]), _s(["B"], ["x", "y"]), _s(["B"], ["x", "y"])])
    assert got == {"accuracy": pytest.approx(200 / 3), "n": 3}
    got = score("pope", ["yes", "no", "yes"], [_s(["yes"], category="random"), _s(["yes"], category="random"),
                                                _s(["no"], category="adversarial")])
    assert got["accuracy"] == pytest.approx(100 / 3) and got["random/accuracy"] == 50.0
    assert got["adversarial/accuracy"] == 0.0
    assert score("exact_match", ["Red"], [_s(["red"])]) == {"exact_match": 100.0, "n": 1}
    with pytest.raises(ValueError, match="valid"):
        score("nope", [], [])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        score("vqa", ["a", "b"], [_s(["a"] * 10)])
