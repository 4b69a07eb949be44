"""VisionZip: keep the tokens the [CLS] query attends to most, fold the rest into a few merged tokens.

Paper: Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision
Language Models" (CVPR 2025). Why: in CLIP-like towers a small set of tokens
soaks up most of the [CLS] attention and carries most of the image content;
keeping those ("dominant") plus a handful of averages of everything else
("contextual") loses little, and runs before the LLM without any text.

Upstream read: github dvlab-research/VisionZip at commit
3151f6df4fca36a4cd1c985e5956e725b1f9ad02, files `visionzip/clip_encoder.py`
(`CLIPVisionTower_VisionZip.forward`: the selection), `visionzip/utils.py`
(`CLIPAttention_forward`: where the keys come from; `apply_info`: which layer),
`visionzip/main.py` (`visionzip(model, dominant, contextual)`: the CLS is
counted in `dominant`), `visionzip/llava_arch.py` (LLaVA-NeXT crops) and
README.md (defaults).

Upstream algorithm (LLaVA-1.5, CLIP ViT-L/14-336, one 577-token crop)
--------------------------------------------------------------------
* Everything comes from the second-to-last encoder layer (layer 22 of 0..23,
  the layer whose output is LLaVA's `vision_feature_layer = -2` features):
  its attention probabilities (softmax over all 577 keys), its output hidden
  states (pre-projector, CLS included) and its keys.
* Keys ("metric"): k_proj(layer_norm1(layer input)) with bias, per head,
  before any scaling (the 1/sqrt(hd) scale is on the query), then the MEAN
  OVER HEADS: [577, head_dim] (64 for ViT-L).
* Dominant: the CLS query row restricted to the patch columns,
  attn[:, 0, 1:] ([H, 576]), SUMMED over heads; the top `dominant - 1`
  patches by that sum, plus the CLS token itself, which is always kept and
  counted in the user-facing `dominant` (`visionzip(model, dominant=54)` keeps
  CLS + 53 patches). Kept tokens stay in index order.
* Contextual: the M remaining patches (in index order) are split into
  targets and others. step = max(1, M // contextual); the targets are the
  remaining tokens at ranks 0, step, 2*step, ... (the first `contextual` of
  them). Every non-target remaining token goes to the target with the largest
  dot product of L2-NORMALISED keys (cosine; argmax: first maximum). Each
  contextual token is target_hidden + mean(hidden of the tokens assigned to
  it) (mean over the assigned non-targets only; the target is ADDED, not
  averaged in, and a target with nothing assigned stays its own hidden
  state).
* Output order: [CLS, dominant patches in index order, contextual tokens in
  target order], then the mm_projector. Settings: dominant=54, contextual=10
  for 64 tokens (README); the paper's 128 and 192 settings are 108/20 and
  162/30 (as reproduced by third-party configs; not in this repository's
  code); the `visionzip()` signature defaults are 191/30.

This implementation
-------------------
`select` takes the CLS query row `cls_attention` [H, N], the head-averaged
keys [N, Dk] and the hidden states [N, D] of N tokens and returns the kept
mask and the `contextual` merged vectors:
* `cls_first=False` (default): all N tokens are candidates (patch tokens
  only, or a tower without CLS); the top `dominant` by the head-summed row
  are kept.
* `cls_first=True`: token 0 is the CLS token (pass the full 577-token
  sequence): it is always kept and counts towards `dominant`, its own column
  of `cls_attention` is ignored and it is never a contextual target or member
  -- exactly the upstream rule above. Eager calls require valid[0]; traced
  calls keep token 0 whatever `valid` says.
* Ties (equal head sums, equal similarities) go to the lower index.
* When fewer than `contextual` tokens remain (M < contextual), only M
  targets exist and the later slots are invalid (zeros, `slot_valid` False);
  upstream raises on a shape mismatch there (and divides by zero for
  contextual = 0, which here just yields no contextual token).
* Zero-norm keys have cosine 0 with every target (upstream: NaN).
* Padding: `valid` False rows are never kept, targets or members; they may
  hold junk (even NaN). Eager calls raise ValueError for non-finite values in
  valid rows; traced calls skip value checks.
* `dominant` may be a Python int or a traced integer scalar; `contextual` is a
  static Python int (it sets the output shape).
Memory: [N, contextual] similarities; no N x N matrix.

In `jp.generate` (stage IN_VISION_TOWER; jax_pruning/engine/tower.py)
--------------------------------------------------------------------
The tower hands over, per visual slot, its attention row, head-mean keys and
projector inputs (models.tower_evidence). The sample's budget
floor(keep_ratio x visual tokens) is split over its crops (LLaVA-NeXT) or
images (Qwen-VL) in proportion to their tokens; a crop / image keeping k
forms C = int(k x contextual_ratio) contextual tokens (default 10/64: the
upstream 54 + 10 split of 64, also 108 + 20 of 128 and 162 + 30 of 192) and
keeps k - C dominant tokens. Each contextual token is projected by the model
(LLaVA's projector, the Qwen merger MLP, Qwen3-VL's deepstack mergers too)
and written at its target's slot, so it takes the target's position. Where
this differs from upstream's LLaVA-NeXT path (which keeps each crop's CLS,
selects over all g*g patches before unpad, appends CLS and contextual tokens
after the tile grid and drops the newlines): HF's LLaVA-NeXT never shows CLS
to the LLM and gives a slot only to patches that survive unpad, so we select
among those slots, keep no CLS (all k - C dominant tokens are patches) and
keep the newlines. The LLM then sees exactly the budget.

On towers without a CLS token (the Qwen ViTs) the tower hands over, in place
of the CLS row, the mean attention each token receives in its last block,
summed over the merge_size**2 patches of each LLM token (the stand-in
VisPruner's upstream SigLIP path uses: `attentions[-1].mean(dim=-2)`),
computed blockwise (`models.qwen_vision.received`); keys are that block's
pre-rotary keys, averaged over heads and the merged patches, and the merged
vectors are the merger MLP's inputs (no official Qwen-VL code exists at the
commits read).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.graph import normalize_rows
from jax_pruning.ops.selection import topk_mask

_HIGHEST = jax.lax.Precision.HIGHEST
DOMINANT = 54  # upstream README default for 64 tokens (CLS counted)
CONTEXTUAL = 10


def select(
    cls_attention: Float[Array, "H N"],
    keys: Float[Array, "N Dk"],
    hidden: Float[Array, "N D"],
    dominant,
    contextual: int,
    valid: Bool[Array, "N"] | None = None,
    *,
    cls_first: bool = False,
) -> tuple[Bool[Array, "N"], Float[Array, "C D"]]:
    """(kept bool [N], contextual_tokens float32 [contextual, D]); see the module docstring.

    kept has min(dominant, n_valid) True entries (with `cls_first`: the CLS plus
    min(dominant - 1, n_valid - 1) tokens); unused contextual slots are zeros.
    The LLM input is hidden[kept] (index order) followed by contextual_tokens.
    """
    kept, tokens, _, _ = select_with_targets(cls_attention, keys, hidden, dominant, contextual, valid,
                                             cls_first=cls_first)
    return kept, tokens


def select_with_targets(
    cls_attention: Float[Array, "H N"],
    keys: Float[Array, "N Dk"],
    hidden: Float[Array, "N D"],
    dominant,
    contextual: int,
    valid: Bool[Array, "N"] | None = None,
    *,
    cls_first: bool = False,
) -> tuple[Bool[Array, "N"], Float[Array, "C D"], Int[Array, "C"], Bool[Array, "C"]]:
    """`select` plus (target_index int32 [contextual], slot_valid bool [contextual]).

    target_index[j] is the original position of contextual slot j's target token
    (use it for position ids where the LLM needs them, e.g. M-RoPE); unused
    slots hold 0 and slot_valid False.
    """
    where = "visionzip.select"
    n = _check_select(cls_attention, keys, hidden, dominant, contextual, valid, cls_first, where)
    valid = jnp.ones((n,), jnp.bool_) if valid is None else jnp.asarray(valid)
    if isinstance(dominant, numbers.Integral):
        dominant = min(int(dominant), n)
    return _select(cls_attention, keys, hidden, valid, jnp.asarray(dominant, jnp.int32),
                   jnp.asarray(contextual, jnp.int32), contextual=contextual, cls_first=cls_first)


def select_traced(cls_attention, keys, hidden, valid, dominant, n_contextual, capacity: int):
    """`select_with_targets` inside a jitted caller (no value checks) with traced `dominant` and a traced
    number of contextual tokens `n_contextual` <= the static slot count `capacity`."""
    return _select(cls_attention, keys, hidden, valid, dominant, n_contextual, contextual=capacity, cls_first=False)


def _check_select(cls_attention, keys, hidden, dominant, contextual, valid, cls_first, where) -> int:
    checks.check_array(keys, "keys", where, rank=2, kind="float")
    checks.check_array(hidden, "hidden", where, rank=2, kind="float")
    n = hidden.shape[0]
    checks.check_cls_attention(cls_attention, n, "hidden", where)
    if keys.shape[0] != n:
        raise ValueError(f"{where}: `keys` must have {n} rows like `hidden`, got shape {tuple(keys.shape)}")
    checks.check_mask(valid, "valid", where, n)
    checks.check_count(dominant, "dominant", where, upper=n)
    if isinstance(contextual, bool) or not isinstance(contextual, numbers.Integral):
        raise ValueError(f"{where}: `contextual` must be a static Python int (it sets the output shape), "
                         f"got {type(contextual).__name__} {contextual!r}")
    if contextual < 0:
        raise ValueError(f"{where}: `contextual` must be >= 0, got {contextual}")
    if not isinstance(cls_first, bool):
        raise ValueError(f"{where}: `cls_first` must be a bool, got {cls_first!r}")
    if cls_first and n < 1:
        raise ValueError(f"{where}: `cls_first` needs at least one token (the CLS)")
    if cls_first and isinstance(dominant, numbers.Integral) and dominant < 1:
        raise ValueError(f"{where}: `dominant` counts the CLS token with `cls_first`, so it must be >= 1, "
                         f"got {dominant}")
    if not any(checks.is_traced(x) for x in (cls_attention, keys, hidden, valid)):
        rows = np.ones(n, bool) if valid is None else np.asarray(valid)
        if cls_first and not rows[0]:
            raise ValueError(f"{where}: `valid[0]` must be True with `cls_first` (token 0 is the CLS token)")
        checks.check_finite(np.where(rows[None, :], np.asarray(cls_attention), 0), "cls_attention", where)
        checks.check_finite(np.where(rows[:, None], np.asarray(keys), 0), "keys", where)
        checks.check_finite(np.where(rows[:, None], np.asarray(hidden), 0), "hidden", where)
    return n


@functools.partial(jax.jit, static_argnames=("contextual", "cls_first"))
def _select(cls_attention, keys, hidden, valid, dominant, n_contextual, *, contextual, cls_first):
    """n_contextual (traced, <= the static slot count `contextual`): contextual tokens actually formed."""
    n = hidden.shape[0]
    index = jnp.arange(n, dtype=jnp.int32)
    # Padding may hold NaN: zero it before any sum or product.
    attention = jnp.where(valid[None, :], jnp.asarray(cls_attention, jnp.float32), 0.0)
    keys = jnp.where(valid[:, None], jnp.asarray(keys, jnp.float32), 0.0)
    hidden = jnp.where(valid[:, None], jnp.asarray(hidden, jnp.float32), 0.0)
    score = jnp.sum(attention, axis=0)  # summed over heads, as upstream
    candidate = valid
    quota = dominant
    if cls_first:
        candidate = candidate & (index != 0)
        quota = jnp.maximum(dominant - 1, 0)
    kept = topk_mask(score, quota, candidate)
    if cls_first:
        kept = kept | (index == 0)

    # Contextual: remaining tokens in index order, targets every `step` ranks.
    rest = candidate & ~kept
    rank = jnp.cumsum(rest.astype(jnp.int32)) - 1
    remaining = jnp.sum(rest.astype(jnp.int32))
    if contextual == 0:
        return kept, jnp.zeros((0, hidden.shape[1]), jnp.float32), jnp.zeros((0,), jnp.int32), \
            jnp.zeros((0,), jnp.bool_)
    step = jnp.maximum(1, remaining // jnp.maximum(n_contextual, 1))
    slot = rank // step
    is_target = rest & (rank % step == 0) & (slot < n_contextual)
    slots = jnp.arange(contextual, dtype=jnp.int32)
    slot_valid = slots < jnp.sum(is_target.astype(jnp.int32))
    target_index = jnp.zeros((contextual,), jnp.int32).at[jnp.where(is_target, slot, contextual)].set(
        index, mode="drop")

    unit = normalize_rows(keys)
    similarity = jnp.matmul(unit, unit[target_index].T, precision=_HIGHEST)  # [N, contextual]
    similarity = jnp.where(slot_valid[None, :], similarity, -jnp.inf)
    assign = jnp.argmax(similarity, axis=1)  # first maximum: the lower target on ties
    member = rest & ~is_target
    group = jnp.where(member, assign, contextual)  # non-members go to an extra, discarded segment
    counts = jnp.maximum(jax.ops.segment_sum(member.astype(jnp.float32), group, contextual + 1)[:contextual], 1.0)
    mean = jax.ops.segment_sum(hidden, group, contextual + 1)[:contextual] / counts[:, None]
    tokens = jnp.where(slot_valid[:, None], hidden[target_index] + mean, 0.0)
    return kept, tokens, jnp.where(slot_valid, target_index, 0), slot_valid


CONTEXTUAL_RATIO = CONTEXTUAL / (DOMINANT + CONTEXTUAL)  # 10 of 64 (also 20 of 128, 30 of 192)


def contextual_count(keep: int, ratio: float) -> int:
    """Contextual tokens of a crop / image keeping `keep`: int(keep * ratio) (10 of 64 upstream)."""
    return int(keep * ratio)


def _capacity(options, n: int) -> int:
    return int(n * options["contextual_ratio"]) + 1


def _tower_select(options, inputs: declaration.TowerInputs) -> declaration.TowerChoice:
    """One crop / image: keep - int(keep * contextual_ratio) dominant tokens, the rest of the budget merged
    into contextual tokens, each written at its target's slot."""
    n = inputs.valid.shape[0]
    keep = jnp.minimum(jnp.asarray(inputs.keep, jnp.int32), jnp.sum(inputs.valid.astype(jnp.int32)))
    table = np.array([contextual_count(j, options["contextual_ratio"]) for j in range(n + 1)], np.int32)
    n_contextual = jnp.asarray(table)[keep]  # Python's arithmetic for every possible (traced) budget
    kept, tokens, target, slot_valid = select_traced(
        inputs.attention.T, inputs.keys, inputs.hidden, inputs.valid, keep - n_contextual, n_contextual,
        _capacity(options, n))
    is_target = jnp.zeros((n,), bool).at[jnp.where(slot_valid, target, n)].set(True, mode="drop")
    absorbed = inputs.valid & ~kept & ~is_target & jnp.any(slot_valid)  # every other token joins a target
    return declaration.TowerChoice(kept, tokens, target, slot_valid, absorbed)


def _tower_flops(options, sizes, keep, widths):
    """Per crop / image of n tokens: n x C key similarities, the passes over the n x P projector inputs that
    form the merged sums (mask, scatter-add, mean: about 4 n P; at P = 1024 they are a fifth of the op), and
    projecting the C merged tokens, with C = its contextual slots as compiled (int(n * contextual_ratio) + 1)."""
    sizes = np.asarray(sizes, float)
    slots = np.where(sizes > 0, np.floor(sizes * options["contextual_ratio"]) + 1, 0)
    per_group = 2 * sizes * slots * widths["keys"] + 4 * sizes * widths["hidden"] + slots * widths["projector"]
    return per_group.sum(axis=1)


METHOD = declaration.Method(
    name="visionzip",
    stage=declaration.IN_VISION_TOWER,
    options={"contextual_ratio": (CONTEXTUAL_RATIO, declaration.real("a number in [0, 1)", lambda v: 0.0 <= v < 1.0))},
    tower_select=_tower_select,
    merged_capacity=_capacity,
    tower_flops=_tower_flops,
)
