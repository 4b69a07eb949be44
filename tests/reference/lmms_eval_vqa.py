"""Oracle: lmms-eval's VQA-accuracy scoring, transcribed step by step in its own shape.

Follows EvolvingLMMs-Lab/lmms-eval at commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
lmms_eval/tasks/_task_utils/vqa_eval_metric.py (EvalAIAnswerProcessor),
lmms_eval/tasks/vqav2/utils.py, textvqa/utils.py, ok_vqa/utils.py, vizwiz_vqa/utils.py,
and the harness step of lmms_eval/api/task.py (ConfigurableTask.process_results
strips each generated string before a task's process_results sees it).

Kept deliberately close to the upstream's literal structure (a processor class
with a contraction dict, dict-based annotator records for VQAv2, in-place
mutation of the doc) so it can serve as an independent check of
`jax_pruning.eval.scorers`, which is written differently. Only for tests.
"""

from __future__ import annotations

import copy
import re
import statistics


class EvalAIAnswerProcessor:
    """The EvalAI answer processor (lmms-eval's copy of mmf's)."""

    CONTRACTIONS = {
        "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
        "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
        "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
        "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
        "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
        "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
        "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
        "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
        "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
        "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
        "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
        "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
        "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
        "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
        "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
        "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
        "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
        "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
        "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
        "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
        "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
        "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
        "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
        "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
        "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
        "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
        "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
        "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
        "youve": "you've",
    }
    NUMBER_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
    ARTICLES = ["a", "an", "the"]
    # Upstream's pattern (its "(?!<=\d)" is a look-ahead, always true before a ".").
    PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
    COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
    PUNCTUATIONS = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                    ",", "?", "!"]

    def word_tokenize(self, word):
        word = word.lower()
        word = word.replace(",", "").replace("?", "").replace("'s", " 's")
        return word.strip()

    def process_punctuation(self, in_text):
        out_text = in_text
        for p in self.PUNCTUATIONS:
            if (p + " " in in_text or " " + p in in_text) or (re.search(self.COMMA_STRIP, in_text) is not None):
                out_text = out_text.replace(p, "")
            else:
                out_text = out_text.replace(p, " ")
        # Upstream passes re.UNICODE (== 32) in the position of `count`: at most 32 periods go.
        out_text = self.PERIOD_STRIP.sub("", out_text, count=int(re.UNICODE))
        return out_text

    def process_digit_article(self, in_text):
        out_text = []
        temp_text = in_text.lower().split()
        for word in temp_text:
            word = self.NUMBER_MAP.setdefault(word, word)
            if word not in self.ARTICLES:
                out_text.append(word)
        for word_id, word in enumerate(out_text):
            if word in self.CONTRACTIONS:
                out_text[word_id] = self.CONTRACTIONS[word]
        return " ".join(out_text)

    def __call__(self, item):
        item = self.word_tokenize(item)
        item = item.replace("\n", " ").replace("\t", " ").strip()
        item = self.process_punctuation(item)
        item = self.process_digit_article(item)
        return item


def harness_strip(result):
    """lmms_eval/api/task.py: generated strings are stripped (None -> "") before process_results."""
    return [res.strip() if res is not None else "" for res in result]


def vqav2_process_results(doc, result):
    eval_ai_processor = EvalAIAnswerProcessor()
    assert len(result) == 1
    resAns = result[0]
    accuracy = 0
    if "answers" in doc and doc["answers"] is not None:
        for ansDic in doc["answers"]:
            ansDic["answer"] = ansDic["answer"].replace("\n", " ")
            ansDic["answer"] = ansDic["answer"].replace("\t", " ")
            ansDic["answer"] = ansDic["answer"].strip()
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        gtAcc = []
        for ansDic in doc["answers"]:
            ansDic["answer"] = eval_ai_processor.process_punctuation(ansDic["answer"])
            ansDic["answer"] = eval_ai_processor.process_digit_article(ansDic["answer"])
        resAns = eval_ai_processor.process_punctuation(resAns)
        resAns = eval_ai_processor.process_digit_article(resAns)
        for gtAnsDatum in doc["answers"]:
            otherGTAns = [item for item in doc["answers"] if item != gtAnsDatum]
            matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        accuracy = statistics.mean(gtAcc)
    return {"exact_match": accuracy}


def _evalai_leave_one_out(doc, result, empty_is_zero):
    """textvqa/ok_vqa/vizwiz_vqa process_results share this body (ok_vqa/vizwiz guard an empty list)."""
    eval_ai_processor = EvalAIAnswerProcessor()
    assert len(result) == 1
    resAns = eval_ai_processor(result[0])
    accuracy = 0
    if "answers" in doc and doc["answers"] is not None:
        gtAcc = []
        for i in range(len(doc["answers"])):
            doc["answers"][i] = eval_ai_processor(doc["answers"][i])
        for i in range(len(doc["answers"])):
            otherGTAns = [doc["answers"][j] for j in range(len(doc["answers"])) if i != j]
            matchingAns = [item for item in otherGTAns if item == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        if empty_is_zero and not gtAcc:
            accuracy = 0
        else:
            accuracy = statistics.mean(gtAcc)
    return {"exact_match": accuracy}


def textvqa_process_results(doc, result):
    return _evalai_leave_one_out(doc, result, empty_is_zero=False)


def ok_vqa_process_results(doc, result):
    return _evalai_leave_one_out(doc, result, empty_is_zero=True)


def vizwiz_vqa_process_results(doc, result):
    return _evalai_leave_one_out(doc, result, empty_is_zero=True)


def vqa_task_score(task, prediction, answers):
    """One sample through the harness: VQAv2 docs carry answer dicts (distinct answer_id), the others strings."""
    if task == "vqav2":
        doc = {"question_id": 0, "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                             for i, a in enumerate(answers)]}
        return vqav2_process_results(doc, harness_strip([prediction]))["exact_match"]
    process = {"textvqa": textvqa_process_results, "ok_vqa": ok_vqa_process_results,
               "vizwiz_vqa": vizwiz_vqa_process_results}[task]
    doc = {"question_id": 0, "answers": copy.deepcopy(list(answers))}
    return process(doc, harness_strip([prediction]))["exact_match"]
