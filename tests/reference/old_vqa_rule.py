"""The VQA rule jax_pruning used before issue 14 (eval/normalize.py + metrics.vqa_accuracy), kept to show
why it was replaced: one normalisation for every task, applied to prediction and answers alike, with a
contraction table generated from every apostrophe-less spelling (so "shes", "couldntve" and "idve" were
rewritten, unlike lmms-eval), a digit-comma rule for one comma only, and no limit on deleted periods.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_FULL_FORMS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he'll he's how'd how'll how's i'd've isn't it'd it'd've it'll let's ma'am mightn't
mightn't've might've mustn't must've needn't not've o'clock oughtn't shan't she'd she'd've she's
should've shouldn't shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd
someone'd've someone'll someone's something'd something'd've something'll that's there'd there'd've
there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we're we've weren't
what'll what're what's what've when's where'd where's where've who'd who'd've who'll who're who's
who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd
you'd've you'll you're you've
""".split()
_REAL_WORDS = {"lets", "shed", "hell", "were", "shell", "well", "its", "wed", "ill"}


def _table() -> dict[str, str]:
    table = {}
    for full in _FULL_FORMS:
        marks = [i for i, ch in enumerate(full) if ch == "'"]
        for r in range(1, len(marks) + 1):
            for dropped in itertools.combinations(marks, r):
                short = "".join(ch for i, ch in enumerate(full) if i not in dropped)
                if short not in _REAL_WORDS:
                    table[short] = full
    return table


_CONTRACTIONS = _table()


def old_normalize(text: str) -> str:
    text = text.replace("\n", " ").replace("\t", " ").strip()
    delete_all = bool(re.search(r"(\d)(,)(\d)", text))
    out = text
    for p in _PUNCTUATION:
        out = out.replace(p, "" if (p + " ") in text or (" " + p) in text or delete_all else " ")
    out = re.sub(r"\.(?!\d)", "", out)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in ("a", "an", "the"))


def old_vqa_accuracy(prediction: str, answers: list[str]) -> float:
    pred = old_normalize(prediction)
    gts = [old_normalize(a) for a in answers]
    return float(np.mean([min(sum(g == pred for j, g in enumerate(gts) if j != i) / 3.0, 1.0)
                          for i in range(len(gts))]))
