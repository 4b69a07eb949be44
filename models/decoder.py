"""One decoder for every text family: Llama / Mistral (LLaVA-NeXT), Qwen2 (Qwen2-VL,
Qwen2.5-VL), Qwen3 (Qwen3-VL), switched by `TextConfig` fields, never by copies.

Param paths mirror HF names (embed_tokens/embedding, layers/<i>/self_attn/q_proj/kernel,
..., norm/scale, lm_head/kernel) so the converter needs one key table per family.

The hook protocol for pruning lives here, as plain building blocks the engine
composes (this module imports no pruning method):
  - before the LLM: `TextModel.__call__` / `run_layers` accept any embeddings with
    any (1-D or 3-D) position ids and a validity mask, so kept tokens keep their
    original positions;
  - at layer L: `run_layers(start, stop)` runs a slice of layers, and
    `last_query_and_keys` gives one query row per sample and the keys, for
    scores without a full attention matrix; the caller then gathers kept rows;
  - in layers < L: `run_layers(..., mask=...)` takes any boolean [B, 1, T, S] mask
    and an optional additive bias (Hi-Lo's candidate merge).
Layers run in a Python loop because shapes change at the removal layer.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models.attention import attention
from models.config import TextConfig
from models.rope import apply_rope, rope_tables

_ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


class KVCache(NamedTuple):
    """One layer's keys/values in fixed slots; which slots hold tokens is the caller's mask."""

    k: jax.Array  # [B, S, Hkv, hd]
    v: jax.Array  # [B, S, Hkv, hd]


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.scale = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        # Normalise in float32 and cast back before the scale, as HF does.
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...] * x32.astype(x.dtype)


def _linear(d_in: int, d_out: int, bias: bool, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)


class Attention(nnx.Module):
    def __init__(self, config: TextConfig, dtype, rngs: nnx.Rngs):
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = _linear(c.hidden_size, c.num_attention_heads * c.head_dim, c.qkv_bias, dtype, rngs)
        self.k_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim, c.qkv_bias, dtype, rngs)
        self.v_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim, c.qkv_bias, dtype, rngs)
        self.o_proj = _linear(c.num_attention_heads * c.head_dim, c.hidden_size, c.o_bias, dtype, rngs)
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, dtype)
            self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, dtype)
        self.qk_norm = c.qk_norm

    def queries(self, x, cos, sin):  # [B, T, D] -> [B, T, H, hd]
        q = self.q_proj(x).reshape(*x.shape[:2], self.num_heads, self.head_dim)
        if self.qk_norm:
            q = self.q_norm(q)
        return apply_rope(q, cos, sin)

    def keys_values(self, x, cos, sin):  # [B, T, D] -> 2 x [B, T, Hkv, hd]
        k = self.k_proj(x).reshape(*x.shape[:2], self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(*x.shape[:2], self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            k = self.k_norm(k)
        return apply_rope(k, cos, sin), v

    def __call__(self, x, cos, sin, mask, cache: KVCache | None = None, write_index=None, bias=None,
                 causal: bool = False):
        """x [B, T, D]; mask bool [B, 1, T, S]: S = T attends to these tokens' own keys (a prefill,
        which also writes them into `cache` at write_index); S = cache capacity attends to the cache.
        causal: the mask hides every key above the query's index (see models.attention)."""
        q = self.queries(x, cos, sin)
        k, v = self.keys_values(x, cos, sin)
        if cache is not None:
            start = (0, write_index, 0, 0)
            cache = KVCache(jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start),
                            jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start))
            if mask.shape[-1] == cache.k.shape[1]:  # decoding: attend over the whole cache
                k, v = cache
            # else a prefill writing its keys: the mask covers just these T keys
        out = attention(q, k, v, mask=mask, bias=bias, scale=self.head_dim**-0.5, causal=causal)
        return self.o_proj(out.reshape(*x.shape[:2], -1)), cache


class MLP(nnx.Module):
    def __init__(self, config: TextConfig, dtype, rngs: nnx.Rngs):
        c = config
        if c.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {c.hidden_act!r}: supported {sorted(_ACTIVATIONS)}")
        self.act = _ACTIVATIONS[c.hidden_act]
        self.gate_proj = _linear(c.hidden_size, c.intermediate_size, c.mlp_bias, dtype, rngs)
        self.up_proj = _linear(c.hidden_size, c.intermediate_size, c.mlp_bias, dtype, rngs)
        self.down_proj = _linear(c.intermediate_size, c.hidden_size, c.mlp_bias, dtype, rngs)

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, config: TextConfig, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.self_attn = Attention(config, dtype, rngs)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.mlp = MLP(config, dtype, rngs)

    def __call__(self, x, cos, sin, mask, cache=None, write_index=None, bias=None, causal: bool = False):
        attn, cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, write_index, bias, causal)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), cache


def causal_mask(query_slots, key_valid):
    """query_slots int [B, T] (slot of each query); key_valid bool [B, S] -> bool [B, 1, T, S].

    A query sees valid keys in slots up to its own: pruned sequences keep their
    tokens in original order, so slot order is causal order.
    """
    slots = jnp.arange(key_valid.shape[-1])
    return ((slots[None, None, :] <= query_slots[:, :, None]) & key_valid[:, None, :])[:, None]


def run_layers(
    model: "TextModel",
    x,  # [B, T, D]
    rope: tuple[jax.Array, jax.Array],  # cos, sin [B, T, hd]
    mask,  # bool [B, 1, T, S]
    *,
    start: int = 0,
    stop: int | None = None,
    caches: Sequence[KVCache] | None = None,  # one per layer in [start, stop)
    write_index=None,  # slot where this call's keys are written in each cache
    additions: Sequence[jax.Array] | None = None,  # additions[i] [B, T, D] added after layer i
    bias=None,  # additive attention bias [B, 1, T, S] (float), or None
    causal: bool = False,  # the mask is causal in slot order: keys above a query's slot are skipped, not masked
):
    """Layers [start, stop) -> (x, new caches or None)."""
    stop = model.text_config.num_hidden_layers if stop is None else stop
    new_caches = [] if caches is not None else None
    cos, sin = rope
    for i in range(start, stop):
        cache = None if caches is None else caches[i - start]
        x, cache = model.layers[i](x, cos, sin, mask, cache, write_index, bias, causal)
        if new_caches is not None:
            new_caches.append(cache)
        if additions is not None and i < len(additions):
            x = x + additions[i].astype(x.dtype)
    return x, new_caches


def last_query_and_keys(layer: DecoderLayer, x, rope, query_index):
    """The layer's query for one row per sample and its keys for every row (after RoPE).

    x [B, S, D] is the layer's input; query_index int [B]. -> (q [B, H, hd],
    k [B, S, Hkv, hd]). Scoring methods (FastV's q_last . K^T) need only this,
    never the S x S attention matrix.
    """
    cos, sin = rope
    h = layer.input_layernorm(x)
    take = lambda a: jnp.take_along_axis(a, query_index.reshape(-1, 1, *([1] * (a.ndim - 2))), axis=1)
    q = layer.self_attn.queries(take(h), take(cos), take(sin))[:, 0]
    k, _ = layer.self_attn.keys_values(h, cos, sin)
    return q, k


class TextModel(nnx.Module):
    def __init__(self, config: TextConfig, *, dtype=jnp.float32, rngs: nnx.Rngs, model_config=None):
        c = config
        self.text_config = c
        # `model.config` is the whole parsed checkpoint config when this is the root model.
        self.config = c if model_config is None else model_config
        self.embed_tokens = nnx.Embed(c.vocab_size, c.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.layers = nnx.List([DecoderLayer(c, dtype, rngs) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, dtype)
        if not c.tie_word_embeddings:
            self.lm_head = _linear(c.hidden_size, c.vocab_size, False, dtype, rngs)

    def embed(self, input_ids):  # [B, T] -> [B, T, D]
        return jnp.take(self.embed_tokens.embedding[...], jnp.asarray(input_ids), axis=0)

    def head(self, hidden):  # [B, T, D] -> float32 logits [B, T, V]
        h = self.norm(hidden)
        if self.text_config.tie_word_embeddings:
            return (h @ self.embed_tokens.embedding[...].T).astype(jnp.float32)
        return self.lm_head(h).astype(jnp.float32)

    def default_positions(self, batch: int, length: int):
        """HF's forward without position_ids: 0..T-1 per row (HF's generate passes its own)."""
        return jnp.broadcast_to(jnp.arange(length), (batch, length))

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, *,
                 layer_additions=None):
        """Unpruned forward -> float32 logits [B, T, V] (no cache)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("TextModel: pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else jnp.asarray(inputs_embeds)
        b, t = x.shape[:2]
        mask = jnp.ones((b, t), bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
        if mask.shape != (b, t):
            raise ValueError(f"TextModel: attention_mask shape {mask.shape} != tokens shape {(b, t)}")
        positions = self.default_positions(b, t) if position_ids is None else jnp.asarray(position_ids)
        return _forward(self, x, positions, mask, layer_additions)


@nnx.jit
def _forward(model: TextModel, x, positions, mask, additions):
    rope = rope_tables(model.text_config, positions)
    slots = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])
    x, _ = run_layers(model, x, rope, causal_mask(slots, mask), additions=additions, causal=True)
    return model.head(x)
