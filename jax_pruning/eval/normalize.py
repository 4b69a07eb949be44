"""Answer normalisation of the official VQA evaluation (VQA v2 / TextVQA / EvalAI).

Steps, in the official order:
1. newlines and tabs -> spaces, strip;
2. punctuation: each of ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? ! is deleted when it
   touches a space in the input (or the input has a digit,digit comma such as
   "1,000"), otherwise replaced by a space ("black-and-white" -> "black and white");
   then every period not followed by a digit is deleted ("3.5" keeps its point);
3. lower case; number words zero..ten -> digits ("none" -> "0"); the articles
   a / an / the dropped; apostrophe-less contractions restored ("dont" -> "don't").

The official script normalises the ground-truth answers only when annotators
disagree; we always normalise them (as EvalAI and lmms-eval do), which can only
matter for answers that differ from their own normal form.
"""

from __future__ import annotations

import itertools
import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# Contractions written with their apostrophes; the table maps every spelling with
# some apostrophes left out to the full one. Spellings that are English words
# themselves ("its", "well", "were", "shell", ...) are not rewritten.
_CONTRACTIONS = """
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
_REAL_WORDS = frozenset({"lets", "shed", "hell", "were", "shell", "well", "its", "wed", "ill"})


def _contraction_table() -> dict[str, str]:
    table = {}
    for full in _CONTRACTIONS:
        apostrophes = [i for i, ch in enumerate(full) if ch == "'"]
        for r in range(1, len(apostrophes) + 1):
            for dropped in itertools.combinations(apostrophes, r):
                short = "".join(ch for i, ch in enumerate(full) if i not in dropped)
                if short not in _REAL_WORDS:
                    table[short] = full
    return table


CONTRACTIONS = _contraction_table()


def strip_punctuation(text: str) -> str:
    """Step 2 above."""
    delete_all = bool(_DIGIT_COMMA.search(text))
    out = text
    for p in PUNCTUATION:
        touches_space = (p + " ") in text or (" " + p) in text
        out = out.replace(p, "" if touches_space or delete_all else " ")
    return _PERIOD.sub("", out)


def digits_and_articles(text: str) -> str:
    """Step 3 above."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
    """The official VQA normal form of an answer (see the module docstring)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return digits_and_articles(strip_punctuation(text))
