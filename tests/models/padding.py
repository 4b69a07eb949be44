"""Test helper: left-pad processor outputs to a fixed length (what an engine does to keep shapes static)."""

from __future__ import annotations

import numpy as np

TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def left_pad(inputs: dict, length: int, pad_id: int) -> dict:
    """Every [B, T] token array padded on the left to [B, length] (ids with pad_id, masks with 0)."""
    out = dict(inputs)
    t = inputs["input_ids"].shape[1]
    if length < t:
        raise ValueError(f"length {length} < sequence length {t}")
    for key in TOKEN_KEYS:
        if key in inputs and inputs[key] is not None:
            fill = pad_id if key == "input_ids" else 0
            a = np.asarray(inputs[key])
            out[key] = np.concatenate([np.full((a.shape[0], length - t), fill, a.dtype), a], axis=1)
    return out
