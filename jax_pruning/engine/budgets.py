"""How many visual tokens each sample keeps, from its real token counts (host side, NumPy).

`keep_ratio` applies to each sample's *real* visual tokens, never to the
padded capacity. LLaVA-NeXT's image_newline tokens are always kept and never
counted, for every method (they carry no image content; MR-Pruner and G-Prune
specify it, the baselines follow so that all methods see the same layout).
With several images in a sample, a method runs over the sample's visual
tokens together and the budgets are summed over its images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jax_pruning.engine.buckets import bucket
from jax_pruning.methods import gprune, hilo, mr_pruner
from jax_pruning.registry import PrunerSpec
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE, VisualTokens


MULTI_RESOLUTION = ("mr_pruner", "gprune")


def multi_resolution_error(name: str) -> ValueError:
    return ValueError(
        f"{name} is a multi-resolution method (base image + anyres tiles, LLaVA-NeXT); this model's "
        f"visual tokens have a single resolution. Use hilo, fastv, tome or random."
    )


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Per-sample counts [B] (int32): what the selection keeps and what the LLM will see."""

    keep: np.ndarray  # visual tokens retained (newlines excluded)
    keep_low: np.ndarray  # of which base-resolution (mr_pruner / gprune split; else 0)
    keep_high: np.ndarray
    candidates: np.ndarray  # Hi-Lo's C (enter layers < L only)
    newlines: np.ndarray  # always kept
    real: np.ndarray  # real visual tokens before pruning (newlines excluded)

    @property
    def seen(self) -> np.ndarray:
        """Visual tokens the LLM's last layers see per sample."""
        return self.keep + self.newlines


def _counts(tokens: VisualTokens) -> dict[str, np.ndarray]:
    valid = np.asarray(tokens.valid)
    kind = np.asarray(tokens.kind)
    return {name: (valid & (kind == k)).sum(axis=1) for name, k in
            (("base", KIND_BASE), ("tile", KIND_TILE), ("newline", KIND_NEWLINE))}


def _official_totals(ratio: float, tokens: VisualTokens) -> np.ndarray:
    """MR-Pruner official: int(ratio * (n_base + rows * (cols + 1))) per image, summed per sample."""
    valid = np.asarray(tokens.valid)
    image = np.asarray(tokens.image)
    kind = np.asarray(tokens.kind)
    rows, cols = np.asarray(tokens.grid_rows)[..., 1], np.asarray(tokens.grid_cols)[..., 1]
    totals = np.zeros(valid.shape[0], np.int64)
    for b in range(valid.shape[0]):
        for i in np.unique(image[b][valid[b]]):
            n_base = int((valid[b] & (image[b] == i) & (kind[b] == KIND_BASE)).sum())
            totals[b] += mr_pruner.official_budget(ratio, n_base, int(rows[b, i]), int(cols[b, i]))
    return totals


def compute_budgets(spec: PrunerSpec | None, tokens: VisualTokens) -> Budgets:
    counts = _counts(tokens)
    base, tile, newline = counts["base"], counts["tile"], counts["newline"]
    real = base + tile
    zeros = np.zeros_like(real)
    if spec is None:
        return Budgets(real, zeros, zeros, zeros, newline, real)
    ratio = float(spec.keep_ratio)
    low = high = cand = zeros
    if spec.name in MULTI_RESOLUTION and real.any() and not tile.any() and not newline.any():
        raise multi_resolution_error(spec.name)
    if spec.name == "mr_pruner":
        if spec.variant == "official":
            keep = np.minimum(_official_totals(ratio, tokens), real)
        else:
            keep = np.floor(ratio * real).astype(np.int64)
    elif spec.name == "gprune":
        pairs = [gprune.multires_budget(ratio, int(nb), int(nt)) for nb, nt in zip(base, tile)]
        low = np.array([lo for lo, _ in pairs], np.int64).reshape(real.shape)
        high = np.array([hi for _, hi in pairs], np.int64).reshape(real.shape)
        keep = low + high
    elif spec.name == "hilo":
        pairs = [hilo.budgets(ratio, spec.candidate_ratio if spec.candidates else 0.0, int(n)) for n in real]
        keep = np.array([k for k, _ in pairs], np.int64).reshape(real.shape)
        cand = np.array([m for _, m in pairs], np.int64).reshape(real.shape)
    else:  # fastv, tome, random
        keep = np.floor(ratio * real.astype(np.float64)).astype(np.int64)
    as32 = lambda a: np.asarray(a, np.int32)
    return Budgets(as32(keep), as32(low), as32(high), as32(cand), as32(newline), as32(real))


def sequence_slots(mode: str, length: int, full, seen, entering) -> tuple[int, int]:
    """(length0, length1): the prefill's bucketed sequence slots before / after its split layer.

    length: the staged (bucketed) prompt length; full, seen, entering [B]: real tokens per sample,
    those the last layers see (text + kept visual), those entering the first layers (Hi-Lo: + its
    candidates C). FastV's first layers run on the full prompt; "pre" has one segment (length1 =
    length0). One formula for the engine and the memory planner (jax_pruning/plan.py).
    """
    length1 = min(bucket(int(np.max(seen, initial=1)), 16), length)
    length0 = min(bucket(int(np.max(full if mode == "fastv" else entering, initial=1)), 16), length)
    return (length0, length0) if mode == "pre" else (length0, length1)
