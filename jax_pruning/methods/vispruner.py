"""VisPruner: keep the [CLS]-attended tokens, then a de-duplicated (diverse) sample of the rest.

Paper: Zhang et al., "Beyond Text-Visual Attention: Exploiting Visual Cues
for Effective Token Pruning in VLMs" (ICCV 2025). Why: the LLM's text-visual
attention is a poor pruning signal; the vision tower's own [CLS] attention
picks the important tokens, and removing near-duplicates among the others
keeps the image's remaining content with few tokens.

Upstream read: github Theia-4869/VisPruner at commit
aefa01adc7c7ce6334e880c88225e90cede760d1, files `llava/model/llava_arch.py`
(`LlavaMetaForCausalLM.encode_images`: the selection;
`prepare_inputs_labels_for_multimodal`: LLaVA-NeXT crops),
`llava/model/multimodal_encoder/clip_encoder.py` and `siglip_encoder.py`
(`feature_select`: which layer, which attention row), `llava/eval/*.py` and
`scripts/v1_5/eval/*.sh` (defaults), README.md.

Upstream algorithm (LLaVA-1.5, per 576-patch crop, budget T)
------------------------------------------------------------
* Features: the CLIP hidden states of `mm_vision_select_layer` (-2), patch
  tokens only (CLS dropped), BEFORE the projector. Attention: the same
  layer's probabilities, CLS query row over the patch columns,
  attentions[-2][:, :, 0, 1:] ([H, 576]; softmax taken over all 577 keys),
  MEAN over heads.
* T_imp = int(T * important_ratio), T_div = T - T_imp. Default
  important_ratio = 0.5 (eval scripts' argparse default; README examples
  128/0.5 and 64/0.75).
* Important: the first T_imp tokens of argsort(attention, descending).
  Residual: the others, IN THAT ATTENTION-DESCENDING ORDER.
* Diverse (only when T_div > 0), on L2-normalised features:
  while True: R = len(residual); r = min(8, R - T_div); stop if r <= 0;
  A = residual[0::2], B = residual[1::2] (alternating over the current
  order); score(a) = max over B of cos(a, b); drop the r A tokens with the
  highest score; the new residual order is [surviving A sorted by
  descending score, then all of B in their current order].
  Each round removes at most 8 tokens, so R reaches T_div exactly.
* Kept = important + final residual (important only when T_div = 0): exactly
  T tokens per crop, returned as a mask (original order).

This implementation
-------------------
`select(cls_attention, features, k, important_ratio, valid)` returns a mask
with exactly min(k, n_valid) True:
* T_imp = int(k * important_ratio) evaluated in Python double for every
  possible k (a static table indexed by k), so a traced k gives the same
  split as upstream's Python arithmetic.
* Ties: attention ties go to the lower index; score ties to the earlier
  position in the current residual order (a stable sort; upstream's
  torch.argsort is unstable, its order on ties unspecified).
* Odd R: A has ceil(R/2) tokens, B floor(R/2). Upstream gathers the kept A
  tokens with a batch index of R // 2 - r columns but ceil(R/2) - r
  positions, a shape mismatch for odd R (an error but for corner cases);
  its configs (N = 576, even T_imp) only ever see even R. r is also capped
  at |A| = ceil(R/2): upstream fails (negative `expand`) when r > R // 2,
  which needs T_div < 8. Rounds continue until R = T_div.
* Zero-norm features have cosine 0 with everything (upstream: NaN).
* Padding: `valid` False rows are never kept and never enter a similarity;
  they may hold junk (even NaN). Eager calls raise ValueError for
  non-finite values in valid rows; traced calls skip value checks.
* Static shapes: the residual order lives in an int32 [N] array whose first
  R entries are live; each round is one iteration of a `lax.while_loop`
  (traced trip count, so k may be traced and vmap works). The N x N cosine
  matrix is computed once (memory N x N per sample, 33 MB for N = 2880);
  a round reads score(a) off each token's precomputed list of its 64 most
  similar tokens (the first one currently in B is the exact maximum) and
  scans full rows only for A tokens whose list holds no B token, so a round
  costs about |A| x 64 instead of |A| x |B| and gives bit-identical scores.
  Under vmap the three scan branches all run (a batched `lax.switch`), i.e.
  the dense cost.

In `jp.generate` (stage IN_VISION_TOWER; jax_pruning/engine/tower.py)
--------------------------------------------------------------------
The tower hands over, per visual slot, its attention row and projector
inputs (models.tower_evidence; features = the main projector's input). The
sample's budget floor(keep_ratio x visual tokens) is split over its crops
(LLaVA-NeXT) or images (Qwen-VL) in proportion to their tokens and the
selection runs per crop / image, as upstream runs per crop. Upstream's
LLaVA-NeXT path selects T per crop over all g*g patches and unpad then drops
some of the kept ones; HF's LLaVA-NeXT gives a slot only to patches that
survive unpad, so we select among those slots and the LLM sees exactly the
budget. Qwen-VL (no CLS): the mean attention each token receives in the
tower's last block, and the merger MLP's inputs as features.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.graph import cosine_similarity
from jax_pruning.ops.selection import rank_order

IMPORTANT_RATIO = 0.5  # upstream eval default (--important_ratio 0.5)
ROUND = 8  # tokens removed per de-duplication round upstream (r = min(8, R - T_div))
NEIGHBOURS = 64  # length of each token's precomputed most-similar list
FALLBACK_ROWS = 128  # A-rows per round scanned in full when their list holds no B token


def important_count(k: int, important_ratio: float = IMPORTANT_RATIO) -> int:
    """T_imp = int(k * important_ratio), upstream's Python arithmetic."""
    return int(k * important_ratio)


def select(
    cls_attention: Float[Array, "H N"],
    features: Float[Array, "N D"],
    k,
    important_ratio: float = IMPORTANT_RATIO,
    valid: Bool[Array, "N"] | None = None,
) -> Bool[Array, "N"]:
    """Keep mask with exactly min(k, n_valid) True (see the module docstring).

    cls_attention: the CLS query row of the selection layer over the N tokens,
    per head [H, N]; features: that layer's pre-projector hidden states [N, D];
    k: Python int or integer scalar (traced is fine, e.g. per sample under vmap);
    important_ratio: static float in [0, 1]; valid: real tokens, default all.
    """
    where = "vispruner.select"
    checks.check_array(features, "features", where, rank=2, kind="float")
    n = features.shape[0]
    checks.check_cls_attention(cls_attention, n, "features", where)
    checks.check_mask(valid, "valid", where, n)
    checks.check_count(k, "k", where, upper=n)
    if checks.is_traced(important_ratio):
        raise ValueError(f"{where}: `important_ratio` must be a static Python float")
    checks.check_real(important_ratio, "important_ratio", where, low=0.0, high=1.0)
    if not any(checks.is_traced(x) for x in (cls_attention, features, valid)):
        rows = np.ones(n, bool) if valid is None else np.asarray(valid)
        checks.check_finite(np.where(rows[None, :], np.asarray(cls_attention), 0), "cls_attention", where)
        checks.check_finite(np.where(rows[:, None], np.asarray(features), 0), "features", where)
    valid = jnp.ones((n,), jnp.bool_) if valid is None else jnp.asarray(valid)
    if isinstance(k, numbers.Integral):
        k = min(int(k), n)
    table = np.array([important_count(j, important_ratio) for j in range(n + 1)], np.int32)
    return _select(cls_attention, features, valid, jnp.asarray(k, jnp.int32), jnp.asarray(table),
                   neighbours=NEIGHBOURS, fallback_rows=FALLBACK_ROWS)


@functools.partial(jax.jit, static_argnames=("neighbours", "fallback_rows"))
def _select(cls_attention, features, valid, k, table, *, neighbours, fallback_rows):
    n = features.shape[0]
    pos = jnp.arange(n, dtype=jnp.int32)
    attention = jnp.where(valid[None, :], jnp.asarray(cls_attention, jnp.float32), 0.0)
    features = jnp.where(valid[:, None], jnp.asarray(features, jnp.float32), 0.0)  # padding may hold NaN
    score = jnp.mean(attention, axis=0)  # mean over heads, as upstream
    order = rank_order(score, valid)  # valid first, descending attention, ties to the lower index
    n_valid = jnp.sum(valid.astype(jnp.int32))
    k = jnp.clip(k, 0, n_valid)
    n_important = table[k]
    n_diverse = k - n_important
    important = jnp.zeros((n,), jnp.bool_).at[order].set(pos < n_important)
    residual = order[jnp.minimum(pos + n_important, n - 1)]  # live: the first R entries
    similarity = cosine_similarity(features, features)  # [N, N], once
    live = n_valid - n_important
    if n >= 2:  # a round needs an A and a B token
        residual, live = _deduplicate(similarity, valid, residual, live, n_diverse, neighbours, fallback_rows)
    diverse = jnp.zeros((n,), jnp.bool_).at[jnp.where(pos < live, residual, n)].set(True, mode="drop")
    return important | (diverse & (n_diverse > 0))


def _deduplicate(similarity, valid, residual, live, target, neighbours, fallback_rows):
    """Upstream's rounds: drop the min(8, R - target, |A|) most duplicated A tokens until R == target.

    score(a) = max over live B of similarity[a, b]. It is read off each token's
    precomputed list of its `neighbours` most similar tokens (descending): the
    first one currently in B gives the exact maximum. A-rows whose list holds
    no B token (B thins out late in the loop, first inside dense clusters) are
    scanned in full: up to `fallback_rows` of them, or all A-rows when more
    miss. Every path returns an entry of `similarity`, so the scores equal a
    dense A x B max bit for bit; only the cost differs (about |A| x neighbours
    per round, plus fallback_rows x N on rounds with misses, versus |A| x N).
    """
    n = residual.shape[0]
    pos = jnp.arange(n, dtype=jnp.int32)
    slots_a, slots_b = pos[0::2], pos[1::2]
    size_cap_a, size_cap_b = slots_a.shape[0], slots_b.shape[0]
    width = min(neighbours, n)
    fallback = min(fallback_rows, size_cap_a)
    # Lists skip the token itself (an A token is never in B) and padding (never in B).
    listing = jnp.where(jnp.eye(n, dtype=jnp.bool_) | ~valid[None, :], -jnp.inf, similarity)
    _, lists = jax.lax.top_k(listing, width)  # [N, width], descending

    def cond(state):
        _, count = state
        return (target > 0) & (count > target)

    def body(state):
        residual, count = state
        size_a, size_b = (count + 1) // 2, count // 2
        drop = jnp.minimum(jnp.minimum(ROUND, count - target), size_a)
        rows_a, rows_b = residual[0::2], residual[1::2]
        live_a = slots_a < count
        in_b = jnp.zeros((n,), jnp.bool_).at[rows_b].max(slots_b < count)
        listed = lists[rows_a]  # [|A| cap, width]
        hit = in_b[listed]
        found = jnp.any(hit, axis=1)
        first = listed[jnp.arange(size_cap_a), jnp.argmax(hit, axis=1)]
        best = similarity[rows_a, first]
        missing = live_a & ~found
        bias = jnp.where(in_b, 0.0, -jnp.inf)  # row max over B = max(row + bias)

        def few(best):
            (which,) = jnp.nonzero(missing, size=fallback, fill_value=size_cap_a)
            scanned = jnp.max(similarity[rows_a[jnp.minimum(which, size_cap_a - 1)]] + bias, axis=1)
            return best.at[which].set(scanned, mode="drop")

        def every(best):
            return jnp.where(found, best, jnp.max(similarity[rows_a] + bias, axis=1))

        misses = jnp.sum(missing.astype(jnp.int32))
        branch = jnp.where(misses == 0, 0, jnp.where(misses <= fallback, 1, 2))
        best = jax.lax.switch(branch, [lambda best: best, few, every], best)
        ranked = rank_order(best, live_a)  # live A first, descending, stable
        kept_a = size_a - drop
        from_a = rows_a[ranked[jnp.minimum(pos + drop, size_cap_a - 1)]]
        from_b = rows_b[jnp.clip(pos - kept_a, 0, size_cap_b - 1)]
        new = jnp.where(pos < kept_a, from_a, jnp.where(pos < kept_a + size_b, from_b, 0))
        return new, count - drop

    return jax.lax.while_loop(cond, body, (residual, jnp.asarray(live, jnp.int32)))


def _tower_select(options, inputs: declaration.TowerInputs) -> declaration.TowerChoice:
    """One crop / image: the head-mean attention picks the important tokens, the de-duplication the rest."""
    n = inputs.valid.shape[0]
    table = np.array([important_count(j, options["important_ratio"]) for j in range(n + 1)], np.int32)
    keep = _select(inputs.attention.T, inputs.features, inputs.valid, jnp.asarray(inputs.keep, jnp.int32),
                   jnp.asarray(table), neighbours=NEIGHBOURS, fallback_rows=FALLBACK_ROWS)
    none = jnp.zeros((0,), jnp.int32)
    return declaration.TowerChoice(keep, jnp.zeros((0, inputs.hidden.shape[1]), inputs.hidden.dtype), none,
                                   none.astype(bool))


def _tower_flops(options, sizes, keep, widths):
    """Per crop / image of n tokens: the n x n cosine matrix over the projector inputs (the rounds then
    read it: comparisons, no products)."""
    return declaration.graph_flops(np.asarray(sizes, float), widths["features"]).sum(axis=1)


METHOD = declaration.Method(
    name="vispruner",
    stage=declaration.IN_VISION_TOWER,
    options={"important_ratio": (IMPORTANT_RATIO, declaration.real("a number in [0, 1]", lambda v: 0.0 <= v <= 1.0))},
    tower_select=_tower_select,
    tower_flops=_tower_flops,
)
