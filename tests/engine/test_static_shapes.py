"""Bucketed shapes: an evaluation compiles once per (bucket, method), never per sample; FLOPs vs XLA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jax_pruning as jp
from jax_pruning.engine import compile_count, generate
from jax_pruning.engine.buckets import bucket
from jax_pruning.engine.flops import static_llm_flops
from jax_pruning.engine.batch import PrefillInputs
from jax_pruning.engine.prefill import PREFILL_STATIC, prefill_impl
from jax_pruning.engine.staging import stage
from jax_pruning.methods.declaration import AT_LLM_LAYER, BEFORE_LLM, BIAS_THEN_REMOVE
from models.qwen_inputs import prepare_qwen_inputs
from tests.engine import families as F
from tests.models import qwen_tiny as qt

SIZES = [(56, 56), (60, 52), (52, 64), (64, 60), (48, 56)]  # 5 image sizes, all in one visual bucket


# XLA's cost analysis counts a while-loop body once: compare against the fused attention form.
pytestmark = pytest.mark.usefixtures("unblocked_attention")


def test_bucket_rounding():
    assert [bucket(n) for n in (1, 8, 9, 17, 100, 129, 1000)] == [8, 8, 10, 20, 112, 160, 1024]
    for n in range(1, 3000):
        b = bucket(n, 1)
        assert n <= b <= max(n * 1.25 + 1, 8)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    _, model = F.build("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"))
    return model


def _batch(sample_ids):
    images = [qt.random_image(*SIZES[i % len(SIZES)], seed=i) for i in sample_ids]
    texts = [f"{F.QWEN_IMAGE} " + " ".join(f"w{(i + j) % 90}" for j in range(3 + i % 4)) for i in sample_ids]
    out = prepare_qwen_inputs(texts, images, tokenizer=qt.tokenizer(), image_processor=qt.image_processor("qwen2_vl"))
    out.pop("images_per_sample")
    return out


def test_twenty_samples_five_sizes_compile_once_per_bucket(qwen):
    spec = jp.pruner("hilo", keep_ratio=0.25, removal_layer=1)
    before = compile_count()
    shapes = set()
    for start in range(0, 20, 4):
        inputs = _batch(range(start, start + 4))
        out = generate(qwen, inputs, spec, 3)
        shapes.add((stage(qwen, inputs, 0).inputs_embeds.shape, out.stats["sequence_slots"]))
    after = compile_count()
    prefills = after["prefill"] - before["prefill"]
    assert prefills == len(shapes) <= 2, (prefills, shapes)
    assert after["decode"] - before["decode"] <= len(shapes)
    assert after["select"] - before["select"] <= len(shapes)  # Hi-Lo's selection: once per visual bucket
    # Another keep ratio / merge ablation of the same method reuses the compiled selection.
    generate(qwen, inputs, spec.replace(keep_ratio=0.5, candidate_ratio=0.5, merge=False), 3)
    assert compile_count()["select"] == after["select"]


AT_LAYER_CHOOSERS = {"fastv": dict(layer=1), "dart": dict(layer=1, image_pivots=2, text_pivots=2),
                     "pyramiddrop": dict(layers=(1,))}


@pytest.mark.parametrize("llm_stage,splits,chooser_name", [(BEFORE_LLM, (), None), (BIAS_THEN_REMOVE, (1,), None)]
                         + [(AT_LLM_LAYER, (1,), name) for name in AT_LAYER_CHOOSERS])
def test_analytic_llm_flops_match_xla_cost_analysis(qwen, llm_stage, splits, chooser_name):
    """The LLM prefill's matmul FLOPs at its padded shapes, with an at-layer method's own op, vs what XLA
    counts (within 10%)."""
    lm = qwen.language_model
    inputs = _batch(range(2))
    prepared = stage(qwen, inputs, 0)
    vt = prepared.visual
    length = prepared.inputs_embeds.shape[1]
    lengths = (length,) if llm_stage == BEFORE_LLM else (length, length * 3 // 4)
    keep = jnp.asarray(vt.valid)
    cand = jnp.zeros_like(keep)
    if llm_stage == BIAS_THEN_REMOVE:  # half of the visual slots become candidates
        cand = keep & (jnp.arange(keep.shape[1]) % 2 == 0)
        keep = keep & ~cand
    graphdef, state = nnx.split(lm)
    chooser = None if chooser_name is None else jp.pruner(chooser_name, keep_ratio=1.0,
                                                          **AT_LAYER_CHOOSERS[chooser_name])
    statics = dict(stage=llm_stage, splits=splits, lengths=lengths, max_new=1, bias_value=0.0, merge=True,
                   chooser=chooser)

    def run(state, batch):
        return prefill_impl(nnx.merge(graphdef, state), batch, **statics)

    batch = PrefillInputs(
        embeds=prepared.inputs_embeds, positions=prepared.position_ids, mask=prepared.attention_mask, additions=None,
        visual_index=jnp.asarray(vt.index), visual_valid=jnp.asarray(vt.valid), visual_image=jnp.asarray(vt.image),
        keep_visual=keep, cand_visual=cand, fixed_visual=jnp.zeros_like(keep), llm_keep=jnp.full((2, 1), 3, jnp.int32))
    cost = jax.jit(run).lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    want = static_llm_flops(lm.text_config, 2, lengths, splits, llm_stage, chooser)
    assert abs(cost["flops"] - want) <= 0.10 * want, (cost["flops"], want)
    assert set(statics) == set(PREFILL_STATIC)
