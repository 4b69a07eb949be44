"""Static shapes: round every size that varies per batch up to a small set of buckets.

A size n goes to the next value of the form q * 2^e with q in {4, 5, 6, 7}
(four buckets per octave, <= 25% padding), never below `minimum`. Every jitted
function then sees a handful of shapes over a whole evaluation, whatever the
image sizes and prompt lengths, so it compiles once per bucket, not per sample.
"""

from __future__ import annotations

import numpy as np


def bucket(n: int, minimum: int = 8) -> int:
    """The smallest bucket >= max(n, minimum)."""
    n = max(int(n), int(minimum), 1)
    if n <= 8:
        return n
    octave = 1 << (n.bit_length() - 3)  # n / octave lies in [4, 8)
    return -(-n // octave) * octave


def pad_text_left(input_ids: np.ndarray, attention_mask: np.ndarray, length: int, pad_id: int):
    """Left-pad [B, T] ids/mask to [B, length] (padding is masked; positions ignore it)."""
    ids = np.asarray(input_ids)
    mask = np.asarray(attention_mask)
    extra = length - ids.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad a length-{ids.shape[1]} batch down to {length}")
    if extra == 0:
        return ids, mask
    fill = np.full((ids.shape[0], extra), pad_id, dtype=ids.dtype)
    return np.concatenate([fill, ids], axis=1), np.concatenate([np.zeros_like(fill, dtype=mask.dtype), mask], axis=1)
