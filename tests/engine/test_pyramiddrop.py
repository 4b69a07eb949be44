"""PyramidDrop's stages on a 4-layer Qwen2-VL: each stage keeps what FastV's definition picks among the
survivors at that layer, the KV cache of each segment holds exactly the tokens that stage kept, and
greedy decoding over the staged caches equals a cache-free reference of the same stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import jax_pruning as jp
import models
from jax_pruning.engine import KEPT, generate
from jax_pruning.engine.staging import stage
from jax_pruning.methods import pyramiddrop
from models.visual_tokens import KIND_NEWLINE
from tests.engine import families as F
from tests.engine import reference as R

NEW = 4
LAYERS = (1, 3)


@pytest.fixture(scope="module")
def deep_qwen(tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    config = F.qt.hf_config("qwen2_vl")
    config.text_config.num_hidden_layers = 4
    if getattr(config.text_config, "layer_types", None):
        config.text_config.layer_types = ["full_attention"] * 4
    torch.manual_seed(0)
    hf = F.qt.randomize_(AutoModelForImageTextToText.from_config(config), 0).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(F.HEAD_SCALE)
        hf.get_input_embeddings().weight.mul_(F.HEAD_SCALE)
    folder = tmp_path_factory.mktemp("deep_qwen")
    hf.save_pretrained(folder)
    return models.load(folder), F.batch("qwen2_vl")


def _layer_masks(n_layers: int, n: int, stages: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
    """Causal masks per layer; from each stage's layer on, only that stage's survivors are keys."""
    causal = np.tril(np.ones((n, n), bool))
    masks = []
    for layer in range(n_layers):
        alive = np.ones(n, bool)
        for start, survivors in stages:
            if layer >= start:
                alive = survivors
        masks.append((causal & alive[None, :]) | np.eye(n, dtype=bool))
    return masks


def _reference(lm, prepared, b: int, layers, keeps):
    """(kept sequence positions after each stage, greedy tokens [NEW]) from the definitions."""
    rows = np.flatnonzero(np.asarray(prepared.attention_mask[b]).astype(bool))
    n = len(rows)
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    visual = np.searchsorted(rows, np.asarray(vt.index[b])[valid & (np.asarray(vt.kind[b]) != KIND_NEWLINE)])
    x = np.asarray(prepared.inputs_embeds)[b, rows][None]
    pos = R._positions(prepared, b, rows, 0)
    size = int(prepared.attention_mask.shape[1]) + NEW
    n_layers = lm.text_config.num_hidden_layers
    stages, alive, picks = [], np.ones(n, bool), []
    for layer, k in zip(layers, keeps):
        states, _ = R._run(lm, x, pos, _layer_masks(n_layers, n, stages), [np.zeros((n, n))] * n_layers, None, size)
        q, keys = R._query_and_keys(lm, R._pad(states[layer], size, 1), R._pad(pos, size, -1), n - 1, layer=layer)
        q, keys = np.asarray(q[0], np.float64), np.asarray(keys[0, :n], np.float64)
        heads, kv_heads = q.shape[0], keys.shape[1]
        logits = np.stack([keys[:, h // (heads // kv_heads)] @ q[h] for h in range(heads)]) / np.sqrt(q.shape[1])
        logits[:, ~alive] = -np.inf
        attn = np.exp(logits - logits.max(axis=1, keepdims=True))
        attn = (attn / attn.sum(axis=1, keepdims=True)).mean(axis=0)
        candidates = [i for i in visual if alive[i]]
        chosen = sorted(candidates, key=lambda i: (-attn[i], i))[:k]
        alive = alive.copy()
        alive[[i for i in visual if i not in chosen]] = False
        stages.append((layer, alive))
        picks.append(np.sort(rows[chosen]))
    table = np.asarray(lm.embed_tokens.embedding[...])
    tokens = []
    for _ in range(NEW):
        xs = np.concatenate([x[0], table[np.asarray(tokens, int)]])[None]
        m = xs.shape[1]
        grown = [(layer, np.concatenate([a, np.ones(len(tokens), bool)])) for layer, a in stages]
        _, logits = R._run(lm, xs, R._positions(prepared, b, rows, len(tokens)), _layer_masks(n_layers, m, grown),
                           [np.zeros((m, m))] * n_layers, None, size)
        tokens.append(int(np.argmax(logits)))
    return picks, np.asarray(tokens)


def test_default_stage_layers_are_quarters_of_the_depth():
    assert pyramiddrop.default_layers(32) == (8, 16, 24)
    assert pyramiddrop.default_layers(28) == (7, 14, 21)
    assert pyramiddrop.default_layers(2) == (1,)
    spec = jp.pruner("pyramiddrop", keep_ratio=0.125)
    real = np.array([576])
    np.testing.assert_array_equal(spec.method.stage_keep(spec, real, 3), [[288, 144, 72]])  # the official 0.5/0.25/0.125


def test_stages_keep_what_fastv_picks_among_survivors_and_decode_like_the_reference(deep_qwen):
    model, inputs = deep_qwen
    spec = jp.pruner("pyramiddrop", keep_ratio=0.25, layers=LAYERS)
    out = generate(model, inputs, spec, NEW, eos_token_id=[])
    real = out.stats["visual_tokens_before"] - out.stats["newlines"]
    keeps = spec.method.stage_keep(spec, real, len(LAYERS))
    text = inputs["attention_mask"].sum(axis=1) - out.stats["visual_tokens_before"]
    cache = out.stats["kv_cache_tokens"]
    assert len(cache) == len(LAYERS) + 1
    np.testing.assert_array_equal(cache[0], inputs["attention_mask"].sum(axis=1))
    for s in range(len(LAYERS)):
        np.testing.assert_array_equal(cache[s + 1], text + keeps[:, s])  # each stage's segment: text + its kept
    np.testing.assert_array_equal(out.visual_tokens, keeps[:, -1])
    prepared = stage(model, inputs, 0)
    for b in range(len(out.tokens)):
        picks, tokens = _reference(model.language_model, prepared, b, LAYERS, keeps[b])
        kept = np.sort(np.asarray(prepared.visual.index[b])[out.visual_labels[b] == KEPT])
        np.testing.assert_array_equal(kept, picks[-1], err_msg=f"sample {b}")
        np.testing.assert_array_equal(out.tokens[b], tokens, err_msg=f"sample {b}")
    one_stage = generate(model, inputs, jp.pruner("pyramiddrop", keep_ratio=0.25, layers=(3,)), NEW, eos_token_id=[])
    assert not np.array_equal(one_stage.visual_labels, out.visual_labels)  # the first stage changed the choice


def test_layers_past_the_depth_are_refused(deep_qwen):
    model, inputs = deep_qwen
    with pytest.raises(ValueError, match="pyramiddrop: layers=.*4 layers"):
        generate(model, inputs, jp.pruner("pyramiddrop", keep_ratio=0.5, layers=(2, 4)), 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        jp.pruner("pyramiddrop", keep_ratio=0.5, layers=(3, 2))
