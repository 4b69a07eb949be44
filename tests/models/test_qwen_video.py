"""Video input (pixel_values_videos / video_grid_thw) of Qwen2-VL / Qwen2.5-VL / Qwen3-VL against HF.

Inputs come from `models.qwen_inputs.prepare_qwen_inputs(videos=...)` (HF's video processors need
torchvision, which does not work here): frames resized by the family's smart_resize rule,
normalised, padded to a multiple of temporal_patch_size, patchified in HF's order; `<|video_pad|>`
expanded as each family's processor does (Qwen3-VL: per-temporal-patch timestamp chunks; Qwen2.5-VL
also second_per_grid_ts). HF's model is fed the same arrays. Checked per family (tiny random,
float32): logits for video-only, image + video and two videos of different lengths / sizes in one
sample (mixed with text-only rows); the helper's token counts and M-RoPE ids against HF's
get_rope_index; what HF hands its language model (inputs_embeds, positions, deepstack); the video
fields of VisualTokens; greedy tokens of `jax_pruning.generate` against HF generate; bad inputs.
The helper's patchify and resize rules are checked against HF's own functions.
"""

import importlib
import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import torch

import jax_pruning as jp
import models
from models.mrope_index import get_rope_index
from models.qwen_inputs import (
    patchify_video,
    prepare_qwen_inputs,
    prepare_qwen_video_inputs,
    qwen3_timestamps,
    smart_resize,
    smart_resize_qwen3_video,
)
from models.visual_tokens import KIND_BASE
from tests.engine import families as F
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)
TOL = 1e-4
IMG = "<|vision_start|><|image_pad|><|vision_end|>"
VID = "<|vision_start|><|video_pad|><|vision_end|>"
FPS = 1.5  # second_per_grid_ts = 2 / 1.5 (Qwen2.5-VL), timestamps i / 1.5 (Qwen3-VL)
# (frames, height, width): odd frame count (last frame repeated), tall, and one large enough for
# several Qwen2.5-VL windows per frame
VIDEOS = {"short_wide": (3, 60, 90), "long_tall": (6, 90, 60), "big": (5, 180, 120)}
IMAGES = {"square": (64, 64), "wide": (56, 112)}
CASES = {
    "video_only": ([f"w1 {VID} w2", f"w3 w4 {VID}"], None, [["short_wide"], ["long_tall"]]),
    "image_and_video": ([f"w1 {IMG} w2 {VID} w3", f"{VID} w4", "w5 w6 w7"], [["square"], [], []],
                        [["short_wide"], ["big"], []]),
    "two_videos": ([f"w1 {VID} w2 {IMG} {VID} w3", "w4 w5"], [["wide"], []], [["long_tall", "big"], []]),
}


def _video(name: str, seed: int) -> list[np.ndarray]:
    frames, h, w = VIDEOS[name]
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(frames)]


def _video_kwargs(family: str) -> dict:
    f = 2 * qt.patch_size_of(family)
    return dict(video_min_pixels=f * f * 4, video_max_pixels=f * f * 48, video_fps=FPS, family=family)


def _inputs(family: str, case: str) -> dict:
    texts, image_names, video_names = CASES[case]
    images = None if image_names is None else [
        [qt.random_image(*IMAGES[n], seed=10 + i) for i, n in enumerate(names)] for names in image_names]
    videos = [[_video(n, seed=i) for i, n in enumerate(names)] for names in video_names]
    out = prepare_qwen_inputs(texts, images, videos, tokenizer=qt.tokenizer(),
                              image_processor=qt.image_processor(family), **_video_kwargs(family))
    out.pop("images_per_sample", None)
    return out


@pytest.fixture(scope="module", params=qt.FAMILIES)
def setup(request, tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    family = request.param
    torch.manual_seed(0)
    hf = qt.randomize_(AutoModelForImageTextToText.from_config(qt.hf_config(family)), 0).eval()
    folder = tmp_path_factory.mktemp(family)
    hf.save_pretrained(folder)
    return family, hf, models.load(folder)


def _hf_forward(hf, inputs):
    """HF logits and what HF hands its language model (inputs_embeds, position_ids, deepstack)."""
    captured = {}

    def hook(_module, _args, kwargs):
        captured.update({k: v for k, v in kwargs.items() if isinstance(v, (torch.Tensor, list))})

    handle = hf.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = hf(**{k: torch.as_tensor(v) for k, v in inputs.items()}).logits.numpy()
    finally:
        handle.remove()
    return logits, captured


def _hf_rope_index(hf, family, inputs):
    kw = {"second_per_grid_ts": torch.as_tensor(inputs["second_per_grid_ts"])} if family == "qwen2_5_vl" else {}
    t = lambda k: None if inputs.get(k) is None else torch.as_tensor(inputs[k])  # noqa: E731
    pos, delta = hf.model.get_rope_index(t("input_ids"), mm_token_type_ids=t("mm_token_type_ids"),
                                         image_grid_thw=t("image_grid_thw"), video_grid_thw=t("video_grid_thw"),
                                         attention_mask=t("attention_mask"), **kw)
    return pos.numpy(), delta.numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf(setup, case):
    family, hf, model = setup
    inputs = _inputs(family, case)
    ref, _ = _hf_forward(hf, inputs)
    out = model(**inputs)
    assert out.dtype == np.float32 and out.shape == ref.shape
    err = float(np.abs(np.asarray(out) - ref)[inputs["attention_mask"].astype(bool)].max())
    print(f"{family} {case}: max-abs logits error {err:.2e}")
    assert err <= TOL, f"{family} {case}: max-abs logits error {err}"


@pytest.mark.parametrize("case", ["image_and_video", "two_videos"])
def test_helper_arrays_fit_hf_and_rope_index_equals_hf(setup, case):
    """Token counts per video_grid_thw, patches per grid, Qwen3-VL's timestamp chunks, Qwen2.5-VL's
    second_per_grid_ts, and our get_rope_index == HF's model.get_rope_index on the helper's arrays."""
    family, hf, _ = setup
    inputs = _inputs(family, case)
    grids, ids = inputs["video_grid_thw"], inputs["input_ids"]
    assert inputs["pixel_values_videos"].shape[0] == int(np.prod(grids, axis=1).sum())
    frames = [VIDEOS[n][0] for names in CASES[case][2] for n in names]
    np.testing.assert_array_equal(grids[:, 0], [-(-f // 2) for f in frames])  # padded to a multiple of 2
    per_sample = [len(names) for names in CASES[case][2]]
    starts = np.cumsum([0, *per_sample])
    for b in range(len(ids)):
        mine = grids[starts[b]:starts[b + 1]]
        assert int((ids[b] == qt.VIDEO_ID).sum()) == int(np.prod(mine, axis=1).sum()) // 4
        images = len(CASES[case][1][b]) if CASES[case][1] else 0
        chunks = int(mine[:, 0].sum()) if family == "qwen3_vl" else 0  # Qwen3: one chunk per temporal patch
        assert int((ids[b] == qt.VISION_END_ID).sum()) == images + len(mine) + chunks
    if family == "qwen2_5_vl":
        np.testing.assert_allclose(inputs["second_per_grid_ts"], np.full(len(grids), 2 / FPS, np.float32))
    else:
        assert "second_per_grid_ts" not in inputs
    ours = get_rope_index(
        ids, inputs.get("image_grid_thw"), inputs["attention_mask"], spatial_merge_size=2,
        mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=grids,
        second_per_grid_ts=inputs.get("second_per_grid_ts"), family=family,
        tokens_per_second=hf.config.vision_config.to_dict().get("tokens_per_second", 1.0),
    )
    ref = _hf_rope_index(hf, family, inputs)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])
    video_t = ref[0][0][ids == qt.VIDEO_ID]
    assert len(np.unique(video_t)) > 2  # the temporal axis really moves across frames


def test_qwen2_5_temporal_positions_multiply_in_float32_like_hf():
    """HF multiplies frame index x tokens_per_second x second_per_grid_ts in float32 (the processor's
    tensor) before truncating: at 0.6 fps, temporal patch 3 sits at 20 (float64 arithmetic gives 19)."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    ids = np.array([[5, qt.VISION_START_ID] + [qt.VIDEO_ID] * 4 * 2 + [qt.VISION_END_ID, 6]])
    types_, grid, seconds = (ids == qt.VIDEO_ID).astype(np.int64) * 2, np.array([[4, 2, 4]]), np.float32([2 / 0.6])
    fake = types.SimpleNamespace(config=qt.hf_config("qwen2_5_vl"))  # HF's method reads only the config
    fake.get_vision_position_ids = lambda *a, **k: Qwen2_5_VLModel.get_vision_position_ids(fake, *a, **k)
    ref, _ = Qwen2_5_VLModel.get_rope_index(fake, torch.as_tensor(ids), mm_token_type_ids=torch.as_tensor(types_),
                                           video_grid_thw=torch.as_tensor(grid),
                                           second_per_grid_ts=torch.as_tensor(seconds))
    ours, _ = get_rope_index(ids, None, spatial_merge_size=2, mm_token_type_ids=types_, video_grid_thw=grid,
                             second_per_grid_ts=seconds, family="qwen2_5_vl", tokens_per_second=2)
    np.testing.assert_array_equal(ours, ref.numpy())
    assert ours[0, 0, 2 + 3 * 2] - ours[0, 0, 2] == 20


def test_prepare_matches_what_hf_feeds_its_language_model(setup):
    """inputs_embeds, M-RoPE ids, deepstack additions at image and video positions equal HF's; the
    visual-token map's frame / video / image fields agree with HF's positions and the grids."""
    family, hf, model = setup
    inputs = _inputs(family, "two_videos")
    _, cap = _hf_forward(hf, inputs)
    p = model.prepare(**inputs, visual_capacity=256, max_images=4)
    assert np.abs(np.asarray(p.inputs_embeds) - cap["inputs_embeds"].numpy()).max() <= 1e-5
    hf_pos = cap["position_ids"].numpy()
    np.testing.assert_array_equal(np.asarray(p.position_ids), hf_pos)
    n_valid = inputs["attention_mask"].sum(1)
    np.testing.assert_array_equal(p.next_position, n_valid + hf.model.rope_deltas.numpy()[:, 0])

    tok, ids = p.visual, inputs["input_ids"]
    vgrid = inputs["video_grid_thw"] // np.array([1, 2, 2])
    igrid = inputs["image_grid_thw"] // np.array([1, 2, 2])
    valid = tok.valid[0]
    is_video = (ids[0] == qt.VIDEO_ID)
    np.testing.assert_array_equal(tok.index[0][valid], np.nonzero(is_video | (ids[0] == qt.IMAGE_ID))[0])
    assert (tok.kind[0][valid] == KIND_BASE).all()
    # sample 0 in prompt order: video 0 (long_tall), the image, video 1 (big)
    items = [("video", 0, vgrid[0]), ("image", None, igrid[0]), ("video", 1, vgrid[1])]
    for j, (what, v, (t, h, w)) in enumerate(items):
        mine = valid & (tok.image[0] == j)
        assert mine.sum() == t * h * w and tok.frames[0, j] == t
        assert (tok.grid_rows[0, j, 0], tok.grid_cols[0, j, 0]) == (t * h, w)
        frame, row, col = tok.frame[0][mine], tok.row[0][mine], tok.col[0][mine]
        np.testing.assert_array_equal(frame, np.repeat(np.arange(t), h * w))
        hf_h, hf_w = hf_pos[1, 0, tok.index[0][mine]], hf_pos[2, 0, tok.index[0][mine]]
        for k in range(t):  # per temporal patch (Qwen3-VL: its own run), HF's own row / col placement
            at = frame == k
            np.testing.assert_array_equal(row[at] - k * h, hf_h[at] - hf_h[at].min())
            np.testing.assert_array_equal(col[at], hf_w[at] - hf_w[at].min())
        np.testing.assert_array_equal(tok.video[0][mine], -1 if what == "image" else v)
        assert (is_video[tok.index[0][mine]] == (what == "video")).all()
        if what == "video" and family == "qwen2_vl":  # one temporal step per grid step
            t_pos = hf_pos[0, 0, tok.index[0][mine]]
            np.testing.assert_array_equal(t_pos - t_pos.min(), frame)
    pad = ~tok.valid
    assert (tok.frame[pad] == -1).all() and (tok.video[pad] == -1).all() and not tok.valid[1].any()
    if family != "qwen3_vl":
        assert p.layer_additions is None
        return
    deepstack = [d.numpy() for d in cap["deepstack_visual_embeds"]]
    visual = cap["visual_pos_masks"].numpy()
    additions = np.asarray(p.layer_additions)
    assert additions.shape == (len(deepstack), *p.inputs_embeds.shape) and len(deepstack) == 2
    for j, d in enumerate(deepstack):
        assert np.abs(additions[j][visual] - d).max() <= 1e-5 and np.abs(d).max() > 1e-2
        assert (additions[j][~visual] == 0).all()
    assert visual[0][is_video].all()  # the video tokens get deepstack features too


def test_batch_equals_each_sample_alone(setup):
    family, _, model = setup
    texts, image_names, video_names = CASES["image_and_video"]
    full = np.asarray(model(**_inputs(family, "image_and_video")))
    for b in range(2):
        images = None if not image_names[b] else [[qt.random_image(*IMAGES[n], seed=10 + i)
                                                   for i, n in enumerate(image_names[b])]]
        videos = [[_video(n, seed=i) for i, n in enumerate(video_names[b])]]
        alone = prepare_qwen_inputs([texts[b]], images, videos, tokenizer=qt.tokenizer(),
                                    image_processor=qt.image_processor(family), **_video_kwargs(family))
        alone.pop("images_per_sample", None)
        n = alone["input_ids"].shape[1]
        err = float(np.abs(np.asarray(model(**alone))[0] - full[b, -n:]).max())  # left padding
        assert err <= TOL, f"{family} sample {b}: batch vs alone {err}"


@pytest.fixture(scope="module")
def scaled(setup, tmp_path_factory):
    """The engine tests' model of the same family (LM head scaled so greedy tokens vary)."""
    family = setup[0]
    return F.build(family, tmp_path_factory.mktemp(f"{family}_scaled"))


def test_greedy_generation_equals_hf(setup, scaled):
    family = setup[0]
    hf, model = scaled
    inputs = _inputs(family, "image_and_video")
    want = F.hf_generate(hf, inputs, 4, pad_id=0)
    out = jp.generate(model, inputs, None, max_new_tokens=4, eos_token_id=[])
    np.testing.assert_array_equal(out.tokens, want)
    assert len(np.unique(want)) > 2, "the test model must produce varied tokens"
    real = [int(np.isin(row, [qt.IMAGE_ID, qt.VIDEO_ID]).sum()) for row in inputs["input_ids"]]
    np.testing.assert_array_equal(out.visual_tokens, real)


def test_bad_inputs_raise(setup):
    family, _, model = setup
    inputs = _inputs(family, "image_and_video")
    without = lambda *keys: {k: v for k, v in inputs.items() if k not in keys}  # noqa: E731
    with pytest.raises(ValueError, match="video_grid_thw is required with pixel_values_videos"):
        model(**without("video_grid_thw"))
    with pytest.raises(ValueError, match="pixel_values_videos is required with video_grid_thw"):
        model(**without("pixel_values_videos"))
    with pytest.raises(ValueError, match=r"input_ids hold \d+ video tokens .* pixel_values_videos was not given"):
        model(**without("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"))
    grid = inputs["video_grid_thw"].copy()
    grid[1, 0] -= 1  # one temporal patch fewer than the pixels hold
    with pytest.raises(ValueError, match=r"pixel_values_videos has \d+ patches but video_grid_thw"):
        model(**{**inputs, "video_grid_thw": grid})
    drop = int(np.prod(inputs["video_grid_thw"][1, 1:]))  # the last video loses its last temporal patch
    with pytest.raises(ValueError, match="Video features and video tokens do not match"):
        model(**{**inputs, "video_grid_thw": grid, "pixel_values_videos": inputs["pixel_values_videos"][:-drop]})
    with pytest.raises(ValueError, match="second_per_grid_ts has 1 entries but video_grid_thw has 2 videos"):
        model(**{**inputs, "second_per_grid_ts": np.ones(1, np.float32)})
    with pytest.raises(ValueError, match="pixel_values_videos must have shape"):
        model(**{**inputs, "pixel_values_videos": inputs["pixel_values_videos"][:, :-1]})
    with pytest.raises(ValueError, match="pixel_values_videos contain NaN"):
        model(**{**inputs, "pixel_values_videos": np.full_like(inputs["pixel_values_videos"], np.nan)})
    with pytest.raises(ValueError, match="pixel_values_videos was not given"):  # the engine names it too
        jp.generate(model, without("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"), None,
                    max_new_tokens=1)


def test_helper_checks_its_arguments():
    family = "qwen2_vl"
    kw = dict(tokenizer=qt.tokenizer(), image_processor=qt.image_processor(family))
    clip = _video("short_wide", 0)
    with pytest.raises(ValueError, match="videos need family="):
        prepare_qwen_inputs([f"w1 {VID}"], None, [clip], **kw)
    with pytest.raises(ValueError, match="1 <\\|video_pad\\|> placeholders but 2 videos"):
        prepare_qwen_video_inputs([f"w1 {VID}"], [clip, clip], family=family, **kw)
    with pytest.raises(ValueError, match="videos per text"):
        prepare_qwen_video_inputs([f"w1 {VID}", "w2"], [[], [clip]], family=family, **kw)
    with pytest.raises(ValueError, match="frames of different sizes"):
        prepare_qwen_video_inputs([f"w1 {VID}"], [[clip[0], clip[0][:30]]], family=family, **kw)
    with pytest.raises(ValueError, match="must be larger than temporal_factor"):  # Qwen3-VL needs 2 frames
        prepare_qwen_video_inputs([f"w1 {VID}"], [clip[:1]], family="qwen3_vl", tokenizer=qt.tokenizer(),
                                  image_processor=qt.image_processor("qwen3_vl"))
    out = prepare_qwen_video_inputs([f"w1 {VID}"], [np.stack(clip)], family=family, **kw)  # one [F, H, W, C] array
    same = prepare_qwen_video_inputs([f"w1 {VID}"], [clip], family=family, **kw)
    np.testing.assert_array_equal(out["pixel_values_videos"], same["pixel_values_videos"])


def _hf_qwen3_video_module():
    """HF's Qwen3-VL video processor module. Its torchvision import is optional, but the lazy module
    refuses without torchvision, so it is loaded from its source file (patchify and smart_resize are
    plain torch / math; Qwen2-VL's video processor has the same patchify)."""
    name = "transformers.models.qwen3_vl.video_processing_qwen3_vl"
    try:
        module = importlib.import_module(name)
        module.smart_resize  # noqa: B018  (raises ImportError on the placeholder)
        return module
    except ImportError:
        import transformers.models.qwen3_vl as package

        path = os.path.join(os.path.dirname(package.__file__), "video_processing_qwen3_vl.py")
        spec = importlib.util.spec_from_file_location(name + "_source", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


def test_patchify_and_resize_rules_equal_hf():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    hf3 = _hf_qwen3_video_module()
    rng = np.random.default_rng(0)
    for frames in (1, 2, 3, 4):  # odd counts: the last frame is repeated
        clip = rng.standard_normal((frames, 3, 56, 84)).astype(np.float32)
        ours, grid = patchify_video(clip, 14, 2, 2)
        ref, t, h, w = hf3.Qwen3VLVideoProcessor.patchify(None, torch.from_numpy(clip)[None], 14, 2, 2)
        np.testing.assert_array_equal(ours, ref[0].numpy())
        assert grid == (t, h, w)
    for height, width in [(60, 90), (20, 24), (420, 390), (90, 2000), (1080, 1920)]:
        for factor in (28, 32):
            lo, hi = factor * factor * 4, factor * factor * 48
            assert smart_resize(height, width, factor, lo, hi) == hf_smart_resize(height, width, factor, lo, hi)
            for frames in (2, 3, 5, 16):
                assert smart_resize_qwen3_video(frames, height, width, 2, factor, lo, hi * 4) == hf3.smart_resize(
                    frames, height, width, temporal_factor=2, factor=factor, min_pixels=lo, max_pixels=hi * 4)
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    for frames, fps in ((3, 1.5), (8, 24.0), (5, 2.0)):
        assert qwen3_timestamps(frames, fps, 2) == Qwen3VLProcessor._calculate_timestamps(
            None, list(range(frames)), fps, 2)
