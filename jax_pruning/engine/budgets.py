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
from jax_pruning.methods.declaration import BEFORE_LLM, BIAS_THEN_REMOVE, TokenCounts, multi_resolution_error
from jax_pruning.registry import PrunerSpec
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE, VisualTokens


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Per-sample counts [B] (int32): what the selection keeps and what the LLM will see."""

    keep: np.ndarray  # visual tokens retained (newlines excluded)
    keep_low: np.ndarray  # of which base-resolution (multi-resolution methods; else 0)
    keep_high: np.ndarray
    candidates: np.ndarray  # Hi-Lo's C (enter layers < L only)
    newlines: np.ndarray  # always kept
    real: np.ndarray  # real visual tokens before pruning (newlines excluded)
    stage_keep: np.ndarray | None = None  # [B, S]: kept after each selection inside the LLM (at-layer methods)
    items: np.ndarray | None = None  # [B, I]: kept per image / video (methods that budget per item; else 0)

    @property
    def seen(self) -> np.ndarray:
        """Visual tokens the LLM's last layers see per sample."""
        return self.keep + self.newlines


def token_counts(tokens: VisualTokens) -> TokenCounts:
    """The model's visual-token map as the plain per-sample counts a method's budget rule reads."""
    valid = np.asarray(tokens.valid)
    kind = np.asarray(tokens.kind)
    image = np.asarray(tokens.image)
    rows, cols = np.asarray(tokens.grid_rows)[..., 1], np.asarray(tokens.grid_cols)[..., 1]
    count = lambda k: (valid & (kind == k)).sum(axis=1).astype(np.int64)  # noqa: E731
    images = tuple(
        tuple((int((valid[b] & (image[b] == i) & (kind[b] == KIND_BASE)).sum()), int(rows[b, i]), int(cols[b, i]))
              for i in np.unique(image[b][valid[b]]))
        for b in range(valid.shape[0]))
    frames = np.asarray(tokens.frames)
    items = tuple(
        tuple((int((valid[b] & (image[b] == i) & (kind[b] != KIND_NEWLINE)).sum()), max(int(frames[b, i]), 1))
              for i in range(frames.shape[1]) if (valid[b] & (image[b] == i)).any())
        for b in range(valid.shape[0]))
    return TokenCounts(count(KIND_BASE), count(KIND_TILE), count(KIND_NEWLINE), images, items)


def compute_budgets(spec: PrunerSpec | None, tokens: VisualTokens, n_stages: int = 1) -> Budgets:
    """Per-sample budgets; n_stages: how many selections an at-layer method makes inside the LLM."""
    counts = token_counts(tokens)
    real, newline = counts.real, counts.newline
    as32 = lambda a: np.asarray(a, np.int32)  # noqa: E731
    zeros = np.zeros_like(real)
    if spec is None:
        return Budgets(as32(real), as32(zeros), as32(zeros), as32(zeros), as32(newline), as32(real),
                       as32(real)[:, None])
    method = spec.method
    if method.multi_resolution and real.any() and not counts.tile.any() and not newline.any():
        raise multi_resolution_error(spec.name)
    budget = method.budget(spec, counts)
    keep = np.minimum(budget.keep, real)
    pick = lambda a: zeros if a is None else a  # noqa: E731
    stage_keep = np.minimum(method.keeps(spec, budget._replace(keep=keep), real, n_stages), real[:, None])
    items = np.zeros(np.shape(tokens.frames), np.int32) if budget.items is None else budget.items
    return Budgets(as32(keep), as32(pick(budget.low)), as32(pick(budget.high)), as32(pick(budget.candidates)),
                   as32(newline), as32(real), as32(stage_keep), as32(items))


def segment_tokens(stage: str, budgets, text_tokens: np.ndarray) -> list[np.ndarray]:
    """Tokens each prefill segment's layers process per sample [B] (see prefill.py's stages)."""
    seen = text_tokens + budgets.seen
    if stage == BEFORE_LLM:
        return [seen]
    if stage == BIAS_THEN_REMOVE:
        return [seen + budgets.candidates, seen]
    fixed = text_tokens + budgets.newlines
    return [fixed + budgets.real] + [fixed + budgets.stage_keep[:, s] for s in range(budgets.stage_keep.shape[1])]


def sequence_slots(length: int, per_segment) -> tuple[int, ...]:
    """The prefill's bucketed sequence slots per segment: each segment's largest real token count
    (`segment_tokens`) rounded up to a bucket, at most the staged prompt length `length`. One formula
    for the engine and the memory planner (jax_pruning/plan.py)."""
    return tuple(min(bucket(int(np.max(n, initial=1)), 16), length) for n in per_segment)
