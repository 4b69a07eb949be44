"""The one decoder vs HF transformers: every family and RoPE kind, padding, KV cache, score rows."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from models.config import TextConfig
from jax_pruning.methods import fastv
from models.decoder import KVCache, TextModel, causal_mask, last_query_and_keys, run_layers
from models.params import load_flat_params
from models.rope import rope_tables
from tests.convert.reference import reference_text_params
from tests.convert.tiny import TEXT, hf_text_model, randomize_, state_dict_np

TOL = 1e-4


def ours_from_hf(hf, config: TextConfig) -> TextModel:
    model = TextModel(config, rngs=__import__("flax").nnx.Rngs(0))
    params = reference_text_params(state_dict_np(hf))
    if config.tie_word_embeddings:  # HF's state dict lists the tied head; we have none
        np.testing.assert_array_equal(params.pop("lm_head/kernel").T, params["embed_tokens/embedding"])
    return load_flat_params(model, params)


def text_config(model_type: str, **overrides) -> TextConfig:
    from models.config import load_config

    raw = dict(model_type=model_type, **(TEXT | overrides))
    return load_config(raw).text


def hf_logits(hf, ids, mask, positions=None):
    with torch.no_grad():
        kwargs = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        if positions is not None:
            kwargs["position_ids"] = torch.from_numpy(positions)
        return hf(**kwargs).logits.numpy()


CASES = {  # case -> (family, config overrides)
    "llama": ("llama", {}),
    "llama3_scaling_bias": ("llama", dict(
        attention_bias=True,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=32),
        rope_theta=500000.0,
    )),
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    "qwen2_tied": ("qwen2", dict(tie_word_embeddings=True)),
    "qwen3": ("qwen3", {}),
    "qwen3_bias": ("qwen3", dict(attention_bias=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_with_padding_and_positions_equal_hf(case):
    model_type, overrides = CASES[case]
    hf = hf_text_model(model_type, seed=11, **overrides)
    ours = ours_from_hf(hf, text_config(model_type, **overrides))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, TEXT["vocab_size"], size=(3, 13))
    mask = np.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 9:] = 0  # right padding
    # Long positions reach the llama3-scaled frequencies (original_max_position 32).
    positions = np.cumsum(mask, axis=1) - 1 + rng.integers(0, 60, size=(3, 1))
    positions = np.where(mask == 1, positions, 1)
    want = hf_logits(hf, ids, mask, positions)
    got = np.asarray(ours(input_ids=ids, attention_mask=mask, position_ids=positions))
    valid = mask.astype(bool)
    err = np.abs(got - want)[valid].max()
    assert err <= TOL, f"{case}: max-abs logits error {err:.2e}"


def test_tied_model_has_no_lm_head():
    config = text_config("qwen2", tie_word_embeddings=True)
    assert config.tie_word_embeddings
    assert not hasattr(TextModel(config, rngs=__import__("flax").nnx.Rngs(0)), "lm_head")


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl"])
def test_mrope_tables_equal_hf(model_type):
    from transformers import AutoConfig

    section = [1, 1, 2] if model_type == "qwen2_vl" else [2, 1, 1]
    text = dict(TEXT, rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=section))
    hf_config = AutoConfig.for_model(model_type, text_config=text).get_text_config()
    if model_type == "qwen2_vl":
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding as Rotary
    else:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding as Rotary
    positions = np.random.default_rng(0).integers(0, 500, size=(3, 2, 7))
    x = torch.zeros(1, dtype=torch.float32)
    cos_hf, sin_hf = Rotary(hf_config)(x, torch.from_numpy(positions))
    from models.config import load_config

    config = load_config(dict(model_type=model_type, text_config=text)).text
    assert config.rope_kind == ("mrope" if model_type == "qwen2_vl" else "mrope_interleaved")
    cos, sin = rope_tables(config, positions)
    np.testing.assert_allclose(np.asarray(cos), cos_hf.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), sin_hf.numpy(), atol=1e-6)
    # The three axes must matter: moving only the width axis changes the tables.
    moved = positions.copy()
    moved[2] += 3
    assert not np.allclose(np.asarray(rope_tables(config, moved)[0]), np.asarray(cos))


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl"])
def test_mrope_text_model_hidden_states_equal_hf(model_type):
    """3-D position ids through the whole decoder vs HF's Qwen-VL text model."""
    from transformers import AutoConfig, AutoModel

    section = [1, 1, 2]
    text = dict(TEXT, rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=section))
    hf_config = AutoConfig.for_model(model_type, text_config=text).get_text_config()
    torch.manual_seed(0)
    hf = randomize_(AutoModel.from_config(hf_config), seed=4).eval()
    from models.config import load_config

    config = load_config(dict(model_type=model_type, text_config=text)).text
    params = {k: v for k, v in reference_text_params(state_dict_np(hf)).items()}
    params["lm_head/kernel"] = np.zeros((TEXT["hidden_size"], TEXT["vocab_size"]), np.float32)
    ours = load_flat_params(TextModel(config, rngs=__import__("flax").nnx.Rngs(0)), params)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, TEXT["vocab_size"], size=(2, 9))
    positions = np.sort(rng.integers(0, 40, size=(3, 2, 9)), axis=-1)
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(ids), position_ids=torch.from_numpy(positions)).last_hidden_state.numpy()
    x = ours.embed(ids)
    slots = jnp.broadcast_to(jnp.arange(9), (2, 9))
    h, _ = run_layers(ours, x, rope_tables(config, positions), causal_mask(slots, jnp.ones((2, 9), bool)))
    got = np.asarray(ours.norm(h))
    assert np.abs(got - want).max() <= TOL


def test_kv_cache_prefill_then_decode_equals_full_forward():
    hf = hf_text_model("qwen3", seed=3)
    config = text_config("qwen3")
    ours = ours_from_hf(hf, config)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, TEXT["vocab_size"], size=(2, 10))
    full = np.asarray(ours(input_ids=ids))
    prompt, capacity = 6, 12
    empty = jnp.zeros((2, capacity, config.num_key_value_heads, config.head_dim))
    caches = [KVCache(empty, empty) for _ in range(config.num_hidden_layers)]
    valid = jnp.zeros((2, capacity), bool).at[:, :prompt].set(True)
    slots = jnp.broadcast_to(jnp.arange(prompt), (2, prompt))
    positions = slots
    h, caches = run_layers(ours, ours.embed(ids[:, :prompt]), rope_tables(config, positions),
                           causal_mask(slots, valid), caches=caches, write_index=0)
    np.testing.assert_allclose(np.asarray(ours.head(h)), full[:, :prompt], atol=TOL)
    for step in range(prompt, 10):
        valid = valid.at[:, step].set(True)
        slot = jnp.full((2, 1), step)
        h, caches = run_layers(ours, ours.embed(ids[:, step : step + 1]), rope_tables(config, slot),
                               causal_mask(slot, valid), caches=caches, write_index=step)
        np.testing.assert_allclose(np.asarray(ours.head(h))[:, 0], full[:, step], atol=TOL)


def test_pruned_sequence_with_original_positions_equals_hf_on_the_same_subset():
    """Dropping tokens but keeping their positions is what every pruner hands the LLM."""
    hf = hf_text_model("llama", seed=6)
    ours = ours_from_hf(hf, text_config("llama"))
    ids = np.random.default_rng(7).integers(0, TEXT["vocab_size"], size=(1, 16))
    kept = np.array([0, 1, 2, 5, 8, 9, 13, 15])
    positions = kept[None]
    want = hf_logits(hf, ids[:, kept], np.ones((1, kept.size), np.int64), positions)
    got = np.asarray(ours(input_ids=ids[:, kept], position_ids=positions))
    assert np.abs(got - want).max() <= TOL


def test_last_query_scores_equal_hf_attention_row():
    hf = hf_text_model("qwen2", seed=9)
    hf.config._attn_implementation = "eager"
    config = text_config("qwen2")
    ours = ours_from_hf(hf, config)
    ids = np.random.default_rng(3).integers(0, TEXT["vocab_size"], size=(2, 11))
    mask = np.ones_like(ids)
    mask[1, 8:] = 0  # sample 1's last real token is at 7
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_attentions=True)
    layer = 1
    attn = out.attentions[layer].numpy()  # [B, H, T, T]
    last = np.array([10, 7])
    want = attn[np.arange(2), :, last].mean(axis=1)  # [B, T]
    x = ours.embed(ids)
    positions = jnp.broadcast_to(jnp.arange(11), (2, 11))
    rope = rope_tables(config, positions)
    h, _ = run_layers(ours, x, rope, causal_mask(positions, jnp.asarray(mask, bool)), stop=layer)
    key_mask = jnp.asarray(mask, bool) & (jnp.arange(11)[None] <= jnp.asarray(last)[:, None])
    q, k = last_query_and_keys(ours.layers[layer], h, rope, jnp.asarray(last))
    got = np.stack([np.asarray(fastv.scores(q[b], k[b], key_mask[b])) for b in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def _positions_from_mask(mask):
    return np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 1)


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_batched_prompts_with_padding_equal_each_prompt_alone(model_type):
    hf = hf_text_model(model_type, seed=12)
    ours = ours_from_hf(hf, text_config(model_type))
    rng = np.random.default_rng(4)
    lengths = [9, 5, 7]
    prompts = [rng.integers(0, TEXT["vocab_size"], size=n) for n in lengths]
    width = max(lengths)
    for side in ("left", "right"):
        ids = np.zeros((3, width), np.int64)
        mask = np.zeros_like(ids)
        for i, p in enumerate(prompts):
            span = slice(width - len(p), width) if side == "left" else slice(0, len(p))
            ids[i, span], mask[i, span] = p, 1
        batched = np.asarray(ours(input_ids=ids, attention_mask=mask, position_ids=_positions_from_mask(mask)))
        for i, p in enumerate(prompts):
            alone = np.asarray(ours(input_ids=p[None]))[0]
            got = batched[i][mask[i] == 1]
            assert np.abs(got - alone).max() <= 1e-5, (side, i)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_bfloat16_close_to_hf_bfloat16(model_type):
    """bf16 weights and activations on both sides: same model up to bf16 rounding (bound 0.05)."""
    import ml_dtypes

    hf = hf_text_model(model_type, seed=13)
    config = text_config(model_type)
    params = {k: v.astype(ml_dtypes.bfloat16) for k, v in reference_text_params(state_dict_np(hf)).items()}
    ours = load_flat_params(TextModel(config, dtype=jnp.bfloat16, rngs=__import__("flax").nnx.Rngs(0)), params)
    ids = np.random.default_rng(8).integers(0, TEXT["vocab_size"], size=(2, 12))
    with torch.no_grad():
        want = hf.to(torch.bfloat16)(input_ids=torch.from_numpy(ids)).logits.float().numpy()
    got = np.asarray(ours(input_ids=ids))
    assert got.dtype == np.float32
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= 0.05 * max(scale, 1.0), f"{model_type}: bf16 max-abs {err:.3f} (logit scale {scale:.2f})"
