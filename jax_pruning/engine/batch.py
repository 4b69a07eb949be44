"""What the selection stage hands the prefill: one typed pytree whose fields declare their batch axis.

Every field is split over the mesh's "data" axis along its declared batch axis
(`BATCH_AXIS`; 0 unless listed), so placement never guesses from shapes (an
M-RoPE table [3, B, T] with B = 3 is still split on its second axis).
"""

from __future__ import annotations

from typing import Optional

import jax
from flax import struct

from models.sharding import constrain_batch, place_batch


@struct.dataclass
class PrefillInputs:
    embeds: jax.Array  # [B, T, D] the LLM's input embeddings (ToMe: merged features written in)
    positions: jax.Array  # [B, T] or [3, B, T] (M-RoPE)
    mask: jax.Array  # [B, T] int or bool: real tokens
    additions: Optional[jax.Array]  # [n, B, T, D] Qwen3-VL deepstack, or None
    visual_index: jax.Array  # int32 [B, Nv]: sequence position of each visual slot
    visual_valid: jax.Array  # bool [B, Nv]
    visual_image: jax.Array  # int32 [B, Nv]: image of each slot within its sample
    keep_visual: jax.Array  # bool [B, Nv]: slots entering the LLM (R for Hi-Lo; all valid at-layer / unpruned)
    cand_visual: jax.Array  # bool [B, Nv]: Hi-Lo candidates C
    fixed_visual: jax.Array  # bool [B, Nv]: slots an at-layer method keeps without scoring (LLaVA-NeXT newlines)
    llm_keep: jax.Array  # int32 [B]: an at-layer method's per-sample k (fixed slots not counted)

    BATCH_AXIS = {"positions": -2, "additions": 1}

    def _map(self, fn):
        return self.replace(**{name: fn(getattr(self, name), self.BATCH_AXIS.get(name, 0))
                               for name in self.__dataclass_fields__})

    def placed(self) -> "PrefillInputs":
        """Host or device arrays -> global arrays split over "data" (under `jax.set_mesh`)."""
        return self._map(place_batch)

    def constrained(self) -> "PrefillInputs":
        """Inside jit: every field pinned to its declared sharding."""
        return self._map(constrain_batch)
