"""Greedy decoding over the pruned KV cache: one jitted loop, caches donated (updated in place).

Generated token s sits at position next_position + s (decoding continues after
the last original position, for 1-D and M-RoPE alike: text tokens carry the
same position on all three M-RoPE axes) and in slot base + s of every segment.
After EOS a sample keeps running (static shapes) but emits `pad_id`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jax_pruning.engine.prefill import Segment, constrain_segments
from jax_pruning.engine.traces import TRACES
from models.decoder import TextModel, run_layers
from models.rope import rope_tables
from models.sharding import constrain_batch


@functools.partial(nnx.jit, static_argnames=("layout", "max_new", "eos_ids", "pad_id"), donate_argnames="segments")
def decode(model: TextModel, first_logits, segments: list[Segment], next_position, finished, *, layout,
           max_new: int, eos_ids: tuple[int, ...], pad_id: int):
    """first_logits [B, V] (prefill), finished bool [B] (rows with nothing to generate, e.g. padding)
    -> (tokens int32 [B, max_new], final segments, decoding steps run int32 []).

    The loop stops as soon as every row has emitted EOS: the rest of `tokens` is padding either way.

    Under a mesh the caches stay batch on "data", KV heads on "model" through the loop.

    The segments are returned so that the donated cache buffers alias the outputs:
    XLA then updates the caches in place instead of copying them (callers may drop them).
    """
    TRACES["decode"] += 1
    batch = first_logits.shape[0]
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)
    token = jnp.argmax(first_logits, axis=-1).astype(jnp.int32)
    done = jnp.isin(token, eos) | finished
    out = jnp.full((batch, max_new), pad_id, jnp.int32).at[:, 0].set(token)
    mrope = model.text_config.uses_mrope

    def step(carry):
        s, segments, token, done, out = carry
        x = model.embed(token[:, None])
        pos = (next_position + s)[:, None]
        rope = rope_tables(model.text_config, jnp.broadcast_to(pos, (3, batch, 1)) if mrope else pos)
        new_segments = []
        for (start, stop, base), seg in zip(layout, segments):
            key_valid = seg.key_valid.at[:, base + s].set(True)
            mask = key_valid[:, None, None, :]
            x, caches = run_layers(model, x, rope, mask, start=start, stop=stop, caches=seg.caches,
                                   write_index=base + s)
            new_segments.append(Segment(caches, key_valid))
        nxt = jnp.argmax(model.head(x)[:, 0], axis=-1).astype(jnp.int32)
        out = out.at[:, s + 1].set(jnp.where(done, pad_id, nxt))
        return s + 1, constrain_segments(model, new_segments), nxt, done | jnp.isin(nxt, eos), out

    def more(carry):
        s, _, _, done, _ = carry
        return (s < max_new - 1) & ~jnp.all(done)

    segments = constrain_segments(model, segments)
    start = (jnp.int32(0), segments, token, done, out)
    steps, segments, _, _, out = jax.lax.while_loop(more, step, start)
    return constrain_batch(out), segments, steps
