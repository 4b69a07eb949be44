"""The EvalAI answer processor as lmms-eval runs it (VQA-style tasks normalise answers with it).

Follows lmms_eval/tasks/_task_utils/vqa_eval_metric.py (EvalAIAnswerProcessor) of
EvolvingLMMs-Lab/lmms-eval at commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3,
including its quirks, because matching its numbers is the point:

- punctuation: each of ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? ! is deleted when
  it touches a space in the input, or when the input has digits around a run of
  commas ("1,000", "1,,000"); otherwise it becomes a space;
- a period not followed by a digit is deleted, but only the first 32 of them
  (upstream passes re.UNICODE, which is 32, where `count` goes);
- lower case, number words zero..ten and "none" -> digits, articles a/an/the
  dropped, then the upstream contraction table: only its exact spellings (e.g.
  "shes" and "couldntve" are not in it; "somebody'd" maps to "somebodyd");
- `full_normal_form` (TextVQA, OK-VQA, VizWiz) first lower-cases, deletes every
  "," and "?" and splits "'s" off as its own word ("man's" -> "man 's").
"""

from __future__ import annotations

import re

_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGITS_AROUND_COMMAS = re.compile(r"(?<=\d),+(?=\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_UPSTREAM_PERIOD_COUNT = 32

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# The upstream table, as "spelling>replacement" pairs. Left out: its capitalised keys
# ("Im", "Ive", "Id've", "I'dve"), which never match a lower-cased word, and its two
# entries that map a word to itself ("let's", "she's").
_CONTRACTION_PAIRS = """
aint>ain't arent>aren't cant>can't couldve>could've couldnt>couldn't couldn'tve>couldn't've
couldnt've>couldn't've didnt>didn't doesnt>doesn't dont>don't hadnt>hadn't hadnt've>hadn't've
hadn'tve>hadn't've hasnt>hasn't havent>haven't hed>he'd hed've>he'd've he'dve>he'd've hes>he's
howd>how'd howll>how'll hows>how's isnt>isn't itd>it'd itd've>it'd've it'dve>it'd've itll>it'll
maam>ma'am mightnt>mightn't mightnt've>mightn't've mightn'tve>mightn't've mightve>might've
mustnt>mustn't mustve>must've neednt>needn't notve>not've oclock>o'clock oughtnt>oughtn't
ow's'at>'ow's'at 'ows'at>'ow's'at 'ow'sat>'ow's'at shant>shan't shed've>she'd've she'dve>she'd've
shouldve>should've shouldnt>shouldn't shouldnt've>shouldn't've shouldn'tve>shouldn't've
somebody'd>somebodyd somebodyd've>somebody'd've somebody'dve>somebody'd've somebodyll>somebody'll
somebodys>somebody's someoned>someone'd someoned've>someone'd've someone'dve>someone'd've
someonell>someone'll someones>someone's somethingd>something'd somethingd've>something'd've
something'dve>something'd've somethingll>something'll thats>that's thered>there'd
thered've>there'd've there'dve>there'd've therere>there're theres>there's theyd>they'd
theyd've>they'd've they'dve>they'd've theyll>they'll theyre>they're theyve>they've twas>'twas
wasnt>wasn't wed've>we'd've we'dve>we'd've weve>we've werent>weren't whatll>what'll whatre>what're
whats>what's whatve>what've whens>when's whered>where'd wheres>where's whereve>where've whod>who'd
whod've>who'd've who'dve>who'd've wholl>who'll whos>who's whove>who've whyll>why'll whyre>why're
whys>why's wont>won't wouldve>would've wouldnt>wouldn't wouldnt've>wouldn't've
wouldn'tve>wouldn't've yall>y'all yall'll>y'all'll y'allll>y'all'll yall'd've>y'all'd've
y'alld've>y'all'd've y'all'dve>y'all'd've youd>you'd youd've>you'd've you'dve>you'd've youll>you'll
youre>you're youve>you've
"""
CONTRACTIONS = dict(pair.split(">") for pair in _CONTRACTION_PAIRS.split())


def strip_punctuation(text: str) -> str:
    """Punctuation and periods, decided on the text as given (see the module docstring)."""
    delete_all = _DIGITS_AROUND_COMMAS.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_UPSTREAM_PERIOD_COUNT)


def digits_articles_contractions(text: str) -> str:
    words = (NUMBER_WORDS.get(w, w) for w in text.lower().split())
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def _flatten_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqav2_normal_form(text: str) -> str:
    """What lmms-eval's VQAv2 task compares: punctuation, then digits/articles/contractions."""
    return digits_articles_contractions(strip_punctuation(_flatten_whitespace(text)))


def full_normal_form(text: str) -> str:
    """The processor called as a whole (TextVQA, OK-VQA, VizWiz): its word tokenising comes first."""
    tokenised = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return vqav2_normal_form(tokenised)
