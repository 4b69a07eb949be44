"""GQA: lmms-eval's `exact_match` metric with ignore_case and ignore_punctuation.

lmms_eval/tasks/gqa/gqa.yaml names the metric; lmms_eval/api/metrics.py
(exact_match_hf_evaluate, a port of HF evaluate's exact_match) computes it, at
EvolvingLMMs-Lab/lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
lower-case both, delete every character of string.punctuation, compare. No
article, number-word or whitespace normalisation: "the cat" is not "cat".

Upstream does this on NumPy fixed-width unicode arrays, which (a) drop trailing
NUL characters and (b) cut a lower-cased string back to its original length
("İ".lower() is two characters). `_as_numpy_string` reproduces both, so exotic
input scores the same.
"""

from __future__ import annotations

import string

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _as_numpy_string(text: str) -> str:
    """What a NumPy unicode array hands back: trailing NULs are not stored."""
    return text.rstrip("\x00")


def _compared_form(text: str) -> str:
    width = len(text)  # the array's width: the Python length, NULs included
    lowered = _as_numpy_string(text.lower()[:width])
    return _as_numpy_string(lowered.translate(_DELETE_PUNCTUATION))


def gqa(prediction: str, answer: str) -> float:
    """1.0 when the stripped prediction equals the answer up to case and punctuation, else 0.0."""
    return float(_compared_form(prediction.strip()) == _compared_form(answer))
