"""3-D M-RoPE position ids for Qwen-VL prompts, as HF `get_rope_index` (transformers 5).

Host-side NumPy: positions depend on where the image tokens are and on the
image grids, both known before the forward pass, so they are computed once
per batch and fed to the jitted model as an int array [3, B, T].

Rules (per row, over the non-padding tokens only, in order):
- a run of text tokens gets 1-D positions p, p+1, ... on all three axes;
- a run of vision tokens of grid (t, h, w) gets (t', h', w') = (t, h/m, w/m)
  positions start + (t_i * interval, row, col); the next position is
  start + max(h', w') (HF's rule, whatever t is);
- padding positions are 0; `rope_deltas[b] = max position + 1 - n_valid`,
  so decoding step s of row b sits at `n_valid + s + rope_deltas[b]`.
Vision tokens under attention-mask padding are skipped like any padding
(HF filters by the mask first): their grids are not consumed, so a later
unmasked run takes the next grid in order, HF's shared grid iterator; both
are warned about. A row whose runs do not add up to its grids is an error
(HF's positions would not fit it).
Family differences: Qwen2.5-VL videos space frames by
`tokens_per_second * second_per_grid_ts`; Qwen3-VL splits each video into
t single-frame grids (its prompts separate frames by timestamps).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Optional

import numpy as np

TEXT, IMAGE, VIDEO = 0, 1, 2


def mm_token_type_ids_from(input_ids, image_token_id: int, video_token_id: Optional[int] = None) -> np.ndarray:
    """0 text, 1 image, 2 video, as the HF processor builds `mm_token_type_ids`."""
    ids = np.asarray(input_ids)
    types = np.zeros(ids.shape, np.int32)
    types[ids == image_token_id] = IMAGE
    if video_token_id is not None:
        types[ids == video_token_id] = VIDEO
    return types


def _vision_positions(start: int, grid, merge: int, interval) -> np.ndarray:
    t, h, w = int(grid[0]), int(grid[1]) // merge, int(grid[2]) // merge
    step = np.asarray(interval)  # a float32 step multiplies in float32, as HF's float32 second_per_grid_ts does
    tt = np.arange(t).astype(step.dtype if step.dtype.kind == "f" else np.int64) * step
    tt = tt.astype(np.int64)  # truncation like torch .long()
    tt, hh, ww = np.meshgrid(tt, np.arange(h), np.arange(w), indexing="ij")
    return np.stack([tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)]) + start  # [3, t*h*w]


def _grid_list(grid_thw, name: str) -> list:
    if grid_thw is None:
        return []
    grid = np.asarray(grid_thw)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must have shape [num, 3], got {grid.shape}")
    return [tuple(int(v) for v in row) for row in grid]


def get_rope_index(
    input_ids,
    image_grid_thw=None,
    attention_mask=None,
    *,
    spatial_merge_size: int,
    mm_token_type_ids=None,
    image_token_id: Optional[int] = None,
    video_token_id: Optional[int] = None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    tokens_per_second: float = 1.0,
    family: str = "qwen2_vl",
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids [B, T] -> (position_ids [3, B, T] int32, rope_deltas [B, 1] int32).

    `mm_token_type_ids` may be omitted when `image_token_id` (and `video_token_id`) are given.
    Without any vision grid the positions are plain `arange(T)` on all axes, like HF's text path.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {ids.shape}")
    batch, seq = ids.shape
    mask = np.ones_like(ids, dtype=bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
    if mm_token_type_ids is None:
        if image_token_id is None:
            raise ValueError("get_rope_index needs mm_token_type_ids or image_token_id")
        mm_token_type_ids = mm_token_type_ids_from(ids, image_token_id, video_token_id)
    types = np.asarray(mm_token_type_ids)
    if types.shape != ids.shape:
        raise ValueError(f"mm_token_type_ids shape {types.shape} != input_ids shape {ids.shape}")

    images, videos = _grid_list(image_grid_thw, "image_grid_thw"), _grid_list(video_grid_thw, "video_grid_thw")
    if not images and not videos:
        if (types[mask] != TEXT).any():
            raise ValueError("input_ids contain image/video tokens but no image_grid_thw / video_grid_thw was given")
        positions = np.broadcast_to(np.arange(seq, dtype=np.int32), (3, batch, seq)).copy()
        return positions, np.zeros((batch, 1), np.int32)

    intervals = [1.0] * len(videos)
    if family == "qwen2_5_vl":  # HF: tokens_per_second * next(second_per_grid_ts), in the seconds' float dtype
        seconds = np.ones(len(videos)) if second_per_grid_ts is None else np.asarray(second_per_grid_ts).reshape(-1)
        dtype = seconds.dtype if seconds.dtype.kind == "f" else np.float32
        intervals = [np.asarray(tokens_per_second, dtype) * np.asarray(s, dtype) for s in seconds]
    if family == "qwen3_vl":  # one single-frame grid per video frame
        videos = [(1, h, w) for t, h, w in videos for _ in range(t)]
        intervals = [1.0] * len(videos)
    queues = {IMAGE: list(zip(images, [1.0] * len(images))), VIDEO: list(zip(videos, intervals))}
    used = {IMAGE: 0, VIDEO: 0}
    names = {IMAGE: "image", VIDEO: "video"}
    m = spatial_merge_size
    # Which grid each vision token's own image has (features go by input_ids, mask or not): the k-th
    # token of a kind in the batch belongs to the image whose token range holds k.
    ordinal = {k: (np.cumsum((types == k).reshape(-1)) - 1).reshape(types.shape) for k in queues}
    bounds = {k: np.cumsum([g[0] * g[1] * g[2] // (m * m) for g, _ in queues[k]]) for k in queues}
    hidden = (types != TEXT) & ~mask  # vision tokens under attention-mask padding
    regrided = []  # (row, position, kind, own image, grid used): HF's grid order skipped a hidden image

    positions = np.zeros((3, batch, seq), np.int64)
    deltas = np.zeros((batch, 1), np.int64)
    for b in range(batch):
        where = np.flatnonzero(mask[b])  # HF keeps the unmasked tokens only
        row_types = types[b][where]
        pieces, current, offset, mismatches = [], 0, 0, []
        for kind, run in itertools.groupby(row_types.tolist()):
            length = len(list(run))
            if kind == TEXT:
                pieces.append(np.broadcast_to(np.arange(length) + current, (3, length)))
                current += length
            elif kind in queues:
                if used[kind] >= len(queues[kind]):
                    raise ValueError(f"row {b}: more {names[kind]} token runs than {names[kind]} grids were given")
                grid, interval = queues[kind][used[kind]]
                own = int(np.searchsorted(bounds[kind], ordinal[kind][b, where[offset]], side="right"))
                if own != used[kind] and hidden.any():
                    regrided.append((b, int(where[offset]), names[kind], own, used[kind]))
                used[kind] += 1
                expected = grid[0] * grid[1] * grid[2] // (m * m)
                if length != expected:
                    mismatches.append(
                        f"row {b}, tokens {where[offset]}..{where[offset + length - 1] + 1}: {length} "
                        f"{names[kind]} tokens but its grid {grid} needs {expected}"
                    )
                pieces.append(_vision_positions(current, grid, m, interval))
                current += max(grid[1], grid[2]) // m
            else:
                raise ValueError(f"row {b}: unknown mm_token_type_id {kind}")
            offset += length
        row_pos = np.concatenate(pieces, axis=1) if pieces else np.zeros((3, 0), np.int64)
        if row_pos.shape[1] != len(where):  # HF fails here (its positions do not fit the row)
            hint = " (some of them are under attention-mask padding)" if hidden[b].any() else ""
            raise ValueError(mismatches[0] + hint)
        if mismatches:
            warnings.warn(f"{'; '.join(mismatches)}: the row's counts add up, so HF positions the runs with "
                          f"these grids anyway, and so do we", UserWarning, stacklevel=2)
        positions[:, b, where] = row_pos
        deltas[b, 0] = (row_pos.max() + 1 if row_pos.size else 0) - row_pos.shape[1]
    for kind in (IMAGE, VIDEO):
        if used[kind] != len(queues[kind]) and not hidden[types == kind].any():
            raise ValueError(
                f"{len(queues[kind])} {names[kind]} grids given but only {used[kind]} {names[kind]} token runs found"
            )
    if hidden.any():
        warnings.warn(
            "image/video tokens under attention-mask padding: as HF transformers does, their features are still "
            "written at their positions (by input_ids), but M-RoPE positions (HF's get_rope_index) skip them: "
            "they get position 0, and the grids go in order to the unmasked token runs only",
            UserWarning,
            stacklevel=2,
        )
    if regrided:
        b, at, name, own, took = regrided[0]
        warnings.warn(
            f"row {b}, token {at}: HF's get_rope_index positions {name} #{own} of the batch (counting from 0) "
            f"with the grid of {name} #{took}, because an earlier {name} lies under attention-mask padding and "
            f"its grid went to the next unmasked run; we do the same ({len(regrided)} run(s) affected)",
            UserWarning,
            stacklevel=2,
        )
    return positions.astype(np.int32), deltas.astype(np.int32)


def decode_position_ids(rope_deltas, attention_mask, num_steps: int = 1) -> np.ndarray:
    """Positions of the next `num_steps` generated tokens: [3, B, num_steps].

    A generated token continues after the row's last real token:
    n_valid + s + rope_deltas (HF: text position from the attention mask + delta).
    """
    deltas = np.asarray(rope_deltas).reshape(-1, 1)
    n_valid = np.asarray(attention_mask).astype(bool).sum(-1, keepdims=True)
    if deltas.shape[0] != n_valid.shape[0]:
        raise ValueError(f"rope_deltas has {deltas.shape[0]} rows, attention_mask {n_valid.shape[0]}")
    pos = n_valid + np.arange(num_steps)[None, :] + deltas  # [B, S]
    return np.broadcast_to(pos, (3, *pos.shape)).astype(np.int32)
