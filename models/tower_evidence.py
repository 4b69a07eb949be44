"""What in-tower pruning methods (VisionZip, VisPruner) read from the vision tower, per visual slot.

Those methods select (and VisionZip merges) tokens inside the vision tower,
from the tower's own attention, before the projector. Each family computes,
in the same jitted call as its features, one attention row per token (never a
full attention matrix) and hands it over in the slot order of `VisualTokens`:

  attention [B, Nv, H]  LLaVA-NeXT (CLIP): the [CLS] query's softmax row of the
                        layer producing the features, at each slot's patch (each
                        crop's row sums to 1 over its 1 + g*g tokens).
                        Qwen-VL (no CLS): the mean attention each token receives
                        in the tower's last block (over its image's patches),
                        summed over the merge_size**2 patches of the LLM token.
  keys [B, Nv, Dk]      that layer's keys averaged over heads (before any rotary
                        embedding), Qwen: averaged over the merged patches too.
  hidden [B, Nv, P]     what the projector's MLP reads for that slot (LLaVA: the
                        selected features; Qwen: the merger's normalised, grouped
                        patches, with Qwen3-VL's deepstack mergers' inputs
                        concatenated after it), so that merged tokens can be
                        projected with `model.project_hidden`.
  group [B, Nv]         host int32: which crop (LLaVA-NeXT) or image (Qwen-VL) of
                        its sample a slot comes from, 0.. per sample; -1 for padding
                        and newlines. Upstream selects per crop / image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import struct


@struct.dataclass
class TowerEvidence:
    attention: Any  # [B, Nv, H] float32
    keys: Any  # [B, Nv, Dk] float32
    hidden: Any  # [B, Nv, P]
    group: Any  # [B, Nv] int32 (host)
    main: int = struct.field(pytree_node=False, default=0)  # hidden's first `main` columns: the main projector's input
    projector_flops: float = struct.field(pytree_node=False, default=0.0)  # projecting one token of `hidden`

    @property
    def widths(self) -> dict:
        """Sizes an in-tower method's FLOP count needs."""
        return {"keys": int(self.keys.shape[-1]), "features": int(self.main), "hidden": int(self.hidden.shape[-1]),
                "projector": float(self.projector_flops)}


def rank_groups(ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[B, Nv] arbitrary per-slot source ids -> 0, 1, ... per sample in order of first appearance; -1 where
    not valid."""
    out = np.full(ids.shape, -1, np.int32)
    for b in range(ids.shape[0]):
        seen = {}
        for j in np.flatnonzero(valid[b]):
            out[b, j] = seen.setdefault(int(ids[b, j]), len(seen))
    return out


def evidence_widths(config) -> tuple[int, int, int]:
    """(heads, key width, hidden width) of a multimodal config's evidence, for memory planning."""
    v = config.vision
    if config.model_type == "llava_next":
        return v.tower.num_attention_heads, v.tower.head_dim, v.projector_in_features
    mergers = 1 + len(v.deepstack_visual_indexes or ())
    return v.num_heads, v.head_dim, mergers * v.hidden_size * v.merge_unit
