"""NumPy transcription of vLLM's EVS (vllm/multimodal/evs.py @094f1178: compute_retained_tokens_count,
compute_retention_mask), for one video of T x h x w merged tokens, in float64."""

from __future__ import annotations

import numpy as np


def retained_count(tokens_per_frame: int, num_frames: int, keep_ratio: float) -> int:
    """max(tokens_per_frame, int(total * (1 - q))) with keep_ratio = 1 - q."""
    return max(tokens_per_frame, int(tokens_per_frame * num_frames * keep_ratio))


def cosine_similarity(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """torch.nn.functional.cosine_similarity along the last axis (each norm clamped at eps)."""
    na = np.maximum(np.linalg.norm(a, axis=-1), eps)
    nb = np.maximum(np.linalg.norm(b, axis=-1), eps)
    return np.sum(a * b, axis=-1) / (na * nb)


def retention_mask(embeds: np.ndarray, thw: tuple[int, int, int], keep_ratio: float, metric: str = "cosine"):
    """embeds [T*h*w, D] of one video (merged grid t, h, w) -> bool [T*h*w]."""
    t, h, w = thw
    x = np.asarray(embeds, np.float64).reshape(t, h, w, -1)
    if metric == "cosine":
        score = 1.0 - cosine_similarity(x[1:], x[:-1])
    else:
        score = np.linalg.norm(x[1:] - x[:-1], axis=-1)
    first = np.full((1, h, w), 255.0 if metric == "cosine" else np.inf)
    flat = np.concatenate([first, score], axis=0).reshape(-1)
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))  # stable descending
    keep = np.zeros(len(flat), bool)
    keep[order[: retained_count(h * w, t, keep_ratio)]] = True
    return keep
