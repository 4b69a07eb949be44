"""The vision side's analytic FLOPs (flops_vision.py) vs XLA's cost analysis of the compiled tower.

XLA also counts elementwise work (norms, activations, softmax, biases), which is
~10% of a width-32 tower but ~2% at width 128; the LLaVA check therefore uses a
width-128 CLIP. Qwen towers run on one image, where the batch's block-diagonal
attention mask equals per-image attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jax_pruning.engine.flops_vision import clip_crop_flops, qwen_image_flops, vision_flops
from models.config import load_config
from models.multimodal import build_multimodal
from models.qwen_vl_plan import plan_qwen_vl_inputs
from tests.engine import families as F
from tests.models import llava_tiny as lt
from tests.models import qwen_tiny as qt


# XLA's cost analysis counts a while-loop body once: compare against the fused attention form.
pytestmark = pytest.mark.usefixtures("unblocked_attention")


def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def test_clip_tower_and_projector_flops_match_xla():
    config = load_config(lt.hf_config(hidden_size=128, intermediate_size=512).to_dict())
    graphdef, state = nnx.split(build_multimodal(config))
    side = config.vision.tower.image_size
    crops = jnp.zeros((3, 3, side, side))
    got = _xla_flops(lambda s, c: nnx.merge(graphdef, s).crop_features(c), state, crops)
    want = 3 * sum(clip_crop_flops(config.vision, config.text.hidden_size))
    assert abs(got - want) <= 0.10 * want, (got, want)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_tower_and_merger_flops_match_xla(family):
    config = load_config(qt.hf_config(family).to_dict())
    graphdef, state = nnx.split(build_multimodal(config))
    inputs = F.batch(family, sizes=("square",), words=("w1",))
    plan = plan_qwen_vl_inputs(config.vision, config.image_token_id, inputs["input_ids"], inputs["attention_mask"],
                               inputs["pixel_values"], inputs["image_grid_thw"], None,
                               video_token_id=config.video_token_id)

    def tower(s, pixels):
        out = nnx.merge(graphdef, s).visual(pixels, plan.layout)
        return out.merged, out.deepstack  # deepstack mergers too (else XLA drops them)

    got = _xla_flops(tower, state, jnp.asarray(plan.pixel_values))
    t, h, w = (int(n) for n in inputs["image_grid_thw"][0])
    want = sum(qwen_image_flops(config.vision, config.text.hidden_size, family, t, h, w))
    assert abs(got - want) <= 0.10 * want, (got, want)
    # generate's per-sample accounting uses the same grids (one image here).
    tower_flops, merger_flops = vision_flops(config, plan.tokens, inputs)
    assert tower_flops[0] + merger_flops[0] == pytest.approx(want)


def test_video_tower_flops_follow_each_items_grid(tmp_path):
    """A batch of a video, an image and another video: each item's tower FLOPs from its own grid."""
    from tests.models.test_qwen_video import _inputs

    family = "qwen2_vl"
    _, model = F.build(family, tmp_path)
    inputs = _inputs(family, "two_videos")  # sample 0: video, image, video (prompt order); sample 1: text
    prepared = model.prepare(**inputs)
    tower, merger = vision_flops(model.config, prepared.visual, inputs)
    grid = lambda key, i: [int(n) for n in inputs[key][i]]  # noqa: E731
    items = [grid("video_grid_thw", 0), grid("image_grid_thw", 0), grid("video_grid_thw", 1)]
    want = sum(sum(qwen_image_flops(model.config.vision, model.config.text.hidden_size, family, *g)) for g in items)
    assert tower[0] + merger[0] == pytest.approx(want) and tower[1] == merger[1] == 0
