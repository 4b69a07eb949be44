"""What in-tower pruning reads from the towers (models.tower_evidence): LLaVA-NeXT's [CLS] row, keys and
projector inputs equal HF's CLIP attention probabilities and states at every slot; the Qwen ViT's received
attention equals a dense computation from its last block; every family's projector inputs reproduce its
LLM features (and Qwen3-VL's deepstack features) through `project_hidden`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.visual_tokens import KIND_NEWLINE
from tests.engine import families as F
from tests.reference import np_visionzip


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    hf, model = F.build("llava_next", tmp_path_factory.mktemp("llava"))
    return hf, model, F.batch("llava_next", **F.MULTI_IMAGE)


def test_llava_evidence_equals_hf_clip(llava):
    hf, model, inputs = llava
    prepared = model.prepare(**inputs, evidence=True)
    evidence = prepared.evidence
    layout = model.plan(inputs["pixel_values"], inputs["image_sizes"], input_ids=np.asarray(inputs["input_ids"]),
                        image_token_id=model.config.image_token_id)
    crops = torch.from_numpy(np.asarray(inputs["pixel_values"], np.float32)).flatten(0, 1)
    tower = hf.model.vision_tower
    with torch.no_grad():
        out = tower(crops, output_attentions=True, output_hidden_states=True)
        layer = len(out.attentions) - 2  # vision_feature_layer -2: the state of layer L-2's output
        cls_row = out.attentions[layer][:, :, 0, 1:]  # [crops, H, g*g]
        block = tower.encoder.layers[layer]
        keys = block.self_attn.k_proj(block.layer_norm1(out.hidden_states[layer]))
        heads = block.self_attn.num_heads
        keys = keys.reshape(*keys.shape[:2], heads, -1).mean(dim=2)[:, 1:]
        hidden = out.hidden_states[-2][:, 1:]
    flat = lambda t: t.reshape(-1, t.shape[-1]).numpy()  # noqa: E731  [crops * g*g, ...]
    want = {"attention": flat(cls_row.transpose(1, 2)), "keys": flat(keys), "hidden": flat(hidden)}
    patch = np.asarray(layout.tokens.valid) & (np.asarray(layout.tokens.kind) != KIND_NEWLINE)
    source = np.asarray(layout.source)
    for name, table in want.items():
        got = np.asarray(getattr(evidence, name))[patch]
        np.testing.assert_allclose(got, table[source[patch]], atol=2e-5, err_msg=name)
    # groups: one per crop, numbered per sample in order
    group = np.asarray(evidence.group)
    g2 = model.vision_config.tower.grid_side ** 2
    for b in range(group.shape[0]):
        crops_b = source[b][patch[b]] // g2
        np.testing.assert_array_equal(group[b][patch[b]], np.unique(crops_b, return_inverse=True)[1])
    assert (group[~patch] == -1).all()


@pytest.mark.parametrize("family", F.FAMILIES)
def test_projector_inputs_reproduce_the_llm_features(family, tmp_path):
    _, model = F.build(family, tmp_path)
    inputs = F.batch(family, **F.MULTI_IMAGE)
    prepared = model.prepare(**inputs, evidence=True)
    evidence, vt = prepared.evidence, prepared.visual
    patch = np.asarray(evidence.group) >= 0
    features, extra = model.project_hidden(evidence.hidden)
    index = np.asarray(vt.index)
    rows = np.broadcast_to(np.arange(index.shape[0])[:, None], index.shape)
    embeds = np.asarray(prepared.inputs_embeds)[rows[patch], index[patch]]
    np.testing.assert_allclose(np.asarray(features)[patch], embeds, atol=2e-5)
    if family == "qwen3_vl":
        additions = np.asarray(prepared.layer_additions)[:, rows[patch], index[patch]]
        np.testing.assert_allclose(np.asarray(extra)[:, patch], additions, atol=2e-5)
    else:
        assert extra is None
    if family != "llava_next":  # each image's received attention: per head, the mean of rows summing to 1
        attention = np.asarray(evidence.attention)
        for b in range(patch.shape[0]):
            for g in np.unique(evidence.group[b][patch[b]]):
                np.testing.assert_allclose(attention[b][evidence.group[b] == g].sum(axis=0), 1.0, atol=1e-5)


def test_qwen_received_attention_equals_dense_last_block(tmp_path):
    """The tower's evidence from its last block, recomputed densely in NumPy from that block's q / k."""
    import jax.numpy as jnp

    from models.qwen_vision.layers import rotary_cos_sin, rotary_inv_freq
    from models.qwen_vl_plan import plan_qwen_vl_inputs

    _, model = F.build("qwen2_vl", tmp_path)
    inputs = F.batch("qwen2_vl")
    prepared = model.prepare(**inputs, evidence=True)
    config = model.config
    plan = plan_qwen_vl_inputs(config.vision, config.image_token_id, np.asarray(inputs["input_ids"]),
                               np.asarray(inputs["attention_mask"]), inputs["pixel_values"], inputs["image_grid_thw"],
                               None, video_token_id=config.video_token_id)
    tower, layout = model.visual, plan.layout
    x = tower.patch_embed(jnp.asarray(plan.pixel_values))
    cos, sin = rotary_cos_sin(layout.rope_hw, rotary_inv_freq(config.vision))
    for block in tower.blocks[:-1]:
        x = block(x, cos, sin, layout.patch_valid)
    last = tower.blocks[-1]
    q, k, raw = (np.asarray(t, np.float64) for t in last.attn.queries_and_keys(last.norm1(x), cos, sin))
    unit = config.vision.merge_unit
    want_att, want_keys = [], []
    for u in range(q.shape[0]):
        valid = np.asarray(layout.patch_valid[u])
        received = np_visionzip.received_attention(q[u], k[u], valid)  # [H, P]
        heads, p = received.shape
        want_att.append(received.reshape(heads, p // unit, unit).sum(-1).T)
        want_keys.append(raw[u].mean(axis=1).reshape(p // unit, unit, -1).mean(axis=1))
    slots = np.asarray(plan.merged_slots)
    patch = np.asarray(prepared.evidence.group) >= 0
    for name, table in (("attention", want_att), ("keys", want_keys)):
        flat = np.concatenate(table)  # [U * Pm, ...]: the tower's merged rows, as merged_slots address them
        got = np.asarray(getattr(prepared.evidence, name))[patch]
        np.testing.assert_allclose(got, flat[slots[patch]], atol=1e-5, err_msg=name)
