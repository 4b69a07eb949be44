"""Oracle: lmms-eval's scoring of GQA, POPE, MME, ScienceQA-IMG, DocVQA/InfoVQA (ANLS), ChartQA, OCRBench.

Transcribed in the upstream's own shape from EvolvingLMMs-Lab/lmms-eval at
commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
  lmms_eval/api/metrics.py      exact_match_hf_evaluate (GQA: ignore_case, ignore_punctuation
                                from gqa/gqa.yaml), levenshtein_distance, anls
  lmms_eval/api/task.py         ConfigurableTask.process_results: strip, wrap gold, call the metric
  lmms_eval/tasks/pope/utils.py, mme/utils.py, scienceqa/utils.py, chartqa/utils.py, ocrbench/utils.py
VQA-accuracy tasks are in lmms_eval_vqa.py. Only for tests: an independent
second implementation against which `jax_pruning.eval.scorers` is checked.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict

import numpy as np

from tests.reference.lmms_eval_vqa import harness_strip


# ---- lmms_eval/api/metrics.py -------------------------------------------------------------------

def exact_match_hf_evaluate(predictions, references, regexes_to_ignore=None, ignore_case=False,
                            ignore_punctuation=False, ignore_numbers=False):
    if regexes_to_ignore is not None:
        for s in regexes_to_ignore:
            predictions = np.array([re.sub(s, "", x) for x in predictions])
            references = np.array([re.sub(s, "", x) for x in references])
    else:
        predictions = np.asarray(predictions)
        references = np.asarray(references)
    if ignore_case:
        predictions = np.char.lower(predictions)
        references = np.char.lower(references)
    if ignore_punctuation:
        repl_table = string.punctuation.maketrans("", "", string.punctuation)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)
    if ignore_numbers:
        repl_table = string.digits.maketrans("", "", string.digits)
        predictions = np.char.translate(predictions, table=repl_table)
        references = np.char.translate(references, table=repl_table)
    score_list = predictions == references
    return {"exact_match": np.mean(score_list)}


def levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def anls(references, predictions, thresh_hold=0.5):
    values = []
    pred = predictions[0] if isinstance(predictions[0], str) else predictions[0][0]
    for answer in references:
        gt_answer = " ".join(answer.strip().lower().split())
        det_answer = " ".join(pred.strip().lower().split())
        dist = levenshtein_distance(gt_answer, det_answer)
        length = max(len(answer.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))
    question_result = 1 - min(values)
    if question_result < thresh_hold:
        question_result = 0
    return {"anls": question_result}


# ---- lmms_eval/api/task.py: a yaml metric without process_results ---------------------------------

def gqa_score(prediction, answer):
    """gqa.yaml: doc_to_target "answer" (one string), metric exact_match(ignore_case, ignore_punctuation)."""
    result = harness_strip([prediction])
    result = [res.strip() if res is not None else "" for res in result]
    gold = [answer]
    score = exact_match_hf_evaluate(references=gold, predictions=result, ignore_case=True,
                                    ignore_punctuation=True)
    return float(score["exact_match"])


def anls_score(prediction, answers):
    """docvqa_val / infovqa_val: doc_to_target "answers" (a list: multiple_target), metric anls."""
    result = harness_strip([prediction])
    result = [res.strip() if res is not None else "" for res in result]
    gold = answers if isinstance(answers, list) else [answers]
    return anls(references=gold, predictions=result)["anls"]


# ---- lmms_eval/tasks/pope/utils.py -------------------------------------------------------------

def pope_process_results(doc, results):
    pred = results[0].lower().strip()
    gt_ans = doc["answer"].lower().strip()
    assert gt_ans in ["yes", "no"]
    score = 1.0 if pred == gt_ans else 0.0
    item = {"question_id": doc["question_id"], "score": score, "prediction": pred, "ground_truth": gt_ans}
    return {"pope_accuracy": item, "pope_precision": item, "pope_recall": item, "pope_f1_score": item,
            "pope_yes_ratio": item}


def pope_aggregate_accuracy(results):
    total_score = 0
    for result in results:
        total_score += result["score"]
    return total_score / len(results)


def pope_aggregate_precision(results):
    true_positives = 0
    false_positives = 0
    for result in results:
        pred, gt = result["prediction"], result["ground_truth"]
        if gt == "yes" and pred == "yes":
            true_positives += 1
        elif gt == "no" and pred == "yes":
            false_positives += 1
    total = true_positives + false_positives
    return true_positives / total if total > 0 else 0


def pope_aggregate_recall(results):
    true_positives = 0
    false_negatives = 0
    for result in results:
        pred, gt = result["prediction"], result["ground_truth"]
        if gt == "yes" and pred == "yes":
            true_positives += 1
        elif gt == "yes" and pred == "no":
            false_negatives += 1
    total = true_positives + false_negatives
    return true_positives / total if total > 0 else 0


def pope_aggregate_f1_score(results):
    precision = pope_aggregate_precision(results)
    recall = pope_aggregate_recall(results)
    return 2 * (precision * recall) / (precision + recall) if (precision + recall) > 0 else 0


def pope_score(prediction, answer):
    return pope_process_results({"question_id": 0, "answer": answer},
                                harness_strip([prediction]))["pope_accuracy"]["score"]


def pope_aggregate(predictions, answers):
    items = [pope_process_results({"question_id": i, "answer": a}, harness_strip([p]))["pope_accuracy"]
             for i, (p, a) in enumerate(zip(predictions, answers))]
    return {"accuracy": pope_aggregate_accuracy(items), "precision": pope_aggregate_precision(items),
            "recall": pope_aggregate_recall(items), "f1": pope_aggregate_f1_score(items)}


# ---- lmms_eval/tasks/mme/utils.py --------------------------------------------------------------

MME_PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR"]


def parse_pred_ans(pred_ans):
    pred_ans = pred_ans.lower().strip().replace(".", "")
    pred_label = None
    if pred_ans in ["yes", "no"]:
        pred_label = pred_ans
    elif len(pred_ans) == 1:
        if pred_ans == "y":
            pred_label = "yes"
        elif pred_ans == "n":
            pred_label = "no"
        else:
            pred_label = "other"
    else:
        prefix_pred_ans = pred_ans[:4]
        if "yes" in prefix_pred_ans:
            pred_label = "yes"
        elif "no" in prefix_pred_ans:
            pred_label = "no"
        else:
            pred_label = "other"
    return pred_label


def mme_process_results(doc, results):
    pred = results[0]
    pred_ans = parse_pred_ans(pred)
    gt_ans = doc["answer"].lower().strip().replace(".", "")
    assert gt_ans in ["yes", "no"]
    assert pred_ans in ["yes", "no", "other"]
    score = 1.0 if pred_ans == gt_ans else 0.0
    category = doc["category"]
    key_name = "mme_perception_score" if category in MME_PERCEPTION else "mme_cognition_score"
    return {key_name: {"question_id": doc["question_id"], "category": category, "score": score}}


def mme_aggregate_results(results):
    category2score = defaultdict(dict)
    for result in results:
        question_id, score, category = result["question_id"], result["score"], result["category"]
        if question_id not in category2score[category]:
            category2score[category][question_id] = []
        category2score[category][question_id].append(score)
    category2avg_score = {}
    for category, question2scores in category2score.items():
        total_score = 0
        for question_id, scores in question2scores.items():
            assert len(scores) == 2, "MME only supports pairwise evaluation"
            acc = sum(scores) / len(scores) * 100.0
            acc_plus = (sum(scores) == 2) * 100.0
            total_score += acc_plus + acc
        category2avg_score[category] = total_score / len(question2scores)
    return sum(category2avg_score.values())


def mme_score(prediction, answer):
    out = mme_process_results({"question_id": "q", "answer": answer, "category": "color"},
                              harness_strip([prediction]))
    return out["mme_perception_score"]["score"]


def mme_aggregate(predictions, answers, categories, question_ids):
    """Both of lmms-eval's metrics: each aggregates the results its key routed to it."""
    routed = defaultdict(list)
    for p, a, c, q in zip(predictions, answers, categories, question_ids):
        for key, item in mme_process_results({"question_id": q, "answer": a, "category": c},
                                             harness_strip([p])).items():
            routed[key].append(item)
    perception, cognition = routed["mme_perception_score"], routed["mme_cognition_score"]
    return {"perception": mme_aggregate_results(perception) if perception else 0,
            "cognition": mme_aggregate_results(cognition) if cognition else 0}


# ---- lmms_eval/tasks/scienceqa/utils.py --------------------------------------------------------

def sqa_doc_to_target(doc):
    len_choices = len(doc["choices"])
    options = [chr(ord("A") + i) for i in range(len_choices)]
    return options[doc["answer"]]


def sqa_process_results(doc, results):
    target = sqa_doc_to_target(doc).strip().lower()
    pred = results[0].strip()
    if pred.lower() == target:
        return {"exact_match": 1.0}
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        result = 1.0 if pred[0].lower() == target else 0.0
        return {"exact_match": result}
    return {"exact_match": 0.0}


def sqa_score(prediction, letter):
    index = ord(letter) - ord("A")
    doc = {"choices": ["c"] * (index + 1), "answer": index}
    return sqa_process_results(doc, harness_strip([prediction]))["exact_match"]


# ---- lmms_eval/tasks/chartqa/utils.py ----------------------------------------------------------

def relaxed_correctness(prediction, target, max_relative_change: float = 0.05) -> bool:
    def _to_float(text: str):
        try:
            if text.endswith("%"):
                return float(text.rstrip("%")) / 100.0
            else:
                return float(text)
        except ValueError:
            return None

    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    else:
        return prediction.lower() == target.lower()


def chartqa_process_results(doc, results):
    pred = results[0]
    type = doc["type"]
    score = relaxed_correctness(pred, doc["answer"])
    score = 1.0 if score else 0.0
    return_dict = {"relaxed_overall": score}
    if type == "human_test":
        return_dict["relaxed_human_split"] = score
    else:
        return_dict["relaxed_augmented_split"] = score
    return return_dict


def chartqa_score(prediction, answer, type="human_test"):
    return chartqa_process_results({"answer": answer, "type": type}, harness_strip([prediction]))


# ---- lmms_eval/tasks/ocrbench/utils.py ---------------------------------------------------------

OCRBENCH_CATEGORIES = ["Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                       "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
                       "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
                       "Handwritten Mathematical Expression Recognition"]


def _fold_fullwidth_ascii(text: str) -> str:
    folded = []
    for char in text:
        codepoint = ord(char)
        if 0xFF01 <= codepoint <= 0xFF5E:
            folded.append(chr(codepoint - 0xFEE0))
        elif codepoint == 0x3000:
            folded.append(" ")
        else:
            folded.append(char)
    return "".join(folded)


def ocrbench_process_results(doc, results):
    pred = results[0].strip()
    gt_ans = doc["answer"]
    dataset_name = doc["dataset"]
    score = 0
    if dataset_name == "HME100k":
        if type(gt_ans) == list:
            for j in range(len(gt_ans)):
                answer = gt_ans[j].strip().replace("\n", " ").replace(" ", "")
                predict = pred.strip().replace("\n", " ").replace(" ", "")
                if answer in predict:
                    score = 1
        else:
            answer = gt_ans.strip().replace("\n", " ").replace(" ", "")
            predict = pred.strip().replace("\n", " ").replace(" ", "")
            if answer in predict:
                score = 1
    else:
        if type(gt_ans) == list:
            for j in range(len(gt_ans)):
                answer = _fold_fullwidth_ascii(gt_ans[j]).lower().strip().replace("\n", " ")
                predict = _fold_fullwidth_ascii(pred).lower().strip().replace("\n", " ")
                if answer in predict:
                    score = 1
        else:
            answer = _fold_fullwidth_ascii(gt_ans).lower().strip().replace("\n", " ")
            predict = _fold_fullwidth_ascii(pred).lower().strip().replace("\n", " ")
            if answer in predict:
                score = 1
    return {"ocrbench_accuracy": {"question_type": doc["question_type"], "score": score, "prediction": pred,
                                  "ground_truth": gt_ans}}


def ocrbench_aggregate_accuracy(results):
    """Upstream adds into a module-level dict (so a second call accumulates); a fresh one here."""
    OCRBench_score = {c: 0 for c in OCRBENCH_CATEGORIES}
    for result in results:
        OCRBench_score[result["question_type"]] += result["score"]
    recognition_score = sum(OCRBench_score[c] for c in OCRBENCH_CATEGORIES[:6])
    final_score = recognition_score + sum(OCRBench_score[c] for c in OCRBENCH_CATEGORIES[6:])
    return {"final_score": final_score, "text_recognition": recognition_score, **OCRBench_score}


def ocrbench_score(prediction, answer, dataset, question_type="Regular Text Recognition"):
    doc = {"answer": answer, "dataset": dataset, "question_type": question_type}
    return ocrbench_process_results(doc, harness_strip([prediction]))["ocrbench_accuracy"]["score"]
