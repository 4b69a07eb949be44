"""M-RoPE position ids vs HF `get_rope_index` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL),
and the processor-equivalent input builder (`models.qwen_inputs`)."""

import types

import numpy as np
import pytest
import torch

from models.mrope_index import decode_position_ids, get_rope_index, mm_token_type_ids_from
from models.qwen_inputs import expand_image_tokens, prepare_qwen_inputs
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)


def _hf_rope_index(family, input_ids, mm_types, attention_mask, image_grid_thw=None, video_grid_thw=None, **kw):
    """Call HF's get_rope_index without building a model (it only reads the config)."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    cls = {"qwen2_vl": Qwen2VLModel, "qwen2_5_vl": Qwen2_5_VLModel, "qwen3_vl": Qwen3VLModel}[family]
    fake = types.SimpleNamespace(config=qt.hf_config(family))
    fake.get_vision_position_ids = lambda *a, **k: cls.get_vision_position_ids(fake, *a, **k)
    t = lambda x: None if x is None else torch.as_tensor(np.asarray(x))  # noqa: E731
    pos, delta = cls.get_rope_index(
        fake, t(input_ids), mm_token_type_ids=t(mm_types), image_grid_thw=t(image_grid_thw),
        video_grid_thw=t(video_grid_thw), attention_mask=t(attention_mask), **kw,
    )
    return pos.numpy(), delta.numpy()


def _ours(family, inputs, **kw):
    return get_rope_index(
        inputs["input_ids"], inputs.get("image_grid_thw"), inputs["attention_mask"], spatial_merge_size=2,
        mm_token_type_ids=inputs["mm_token_type_ids"], family=family, **kw,
    )


@pytest.mark.parametrize("family", qt.FAMILIES)
def test_processor_batch_with_left_padding_matches_hf(family):
    """Mixed batch: two images, one image (short row -> padding), text only."""
    texts = [
        "w1 w2 <|vision_start|><|image_pad|><|vision_end|> w3 <|vision_start|><|image_pad|><|vision_end|> w4 w5",
        "<|vision_start|><|image_pad|><|vision_end|> w6",
        "w7 w8 w9",
    ]
    images = [[qt.random_image(112, 224, 0), qt.random_image(96, 288, 1)], [qt.random_image(30, 40, 2)], []]
    inputs = prepare_qwen_inputs(texts, images, tokenizer=qt.tokenizer(), image_processor=qt.image_processor(family))
    mask = inputs["attention_mask"]
    assert (mask[:, 0] == 0).any() and mask[:, -1].all()  # left padded
    ours_pos, ours_delta = _ours(family, inputs)
    ref_pos, ref_delta = _hf_rope_index(
        family, inputs["input_ids"], inputs["mm_token_type_ids"], mask, inputs["image_grid_thw"]
    )
    np.testing.assert_array_equal(ours_pos, ref_pos)
    np.testing.assert_array_equal(ours_delta, ref_delta)
    assert ours_delta[0, 0] < 0  # images compress positions: the test really exercises 3-D ids


def _random_batch(rng, family, with_video):
    """Random interleavings of text runs and image (and video) runs, left padded."""
    rows, image_grids, video_grids = [], [], []
    for _ in range(3):
        row = []
        for _ in range(rng.integers(1, 4)):
            row += [int(x) for x in rng.integers(0, 100, rng.integers(1, 5))] + [qt.VISION_START_ID]
            kind = "video" if with_video and rng.random() < 0.4 else "image"
            t = int(rng.integers(1, 3)) if kind == "video" else 1
            grid = [t, 2 * int(rng.integers(1, 4)), 2 * int(rng.integers(1, 5))]
            if kind == "video" and family == "qwen3_vl":  # Qwen3 prompts: one run per frame
                for _ in range(t):
                    row += [qt.VIDEO_ID] * (grid[1] * grid[2] // 4) + [qt.VISION_END_ID, 5, qt.VISION_START_ID]
                row = row[:-1]
            else:
                row += [qt.IMAGE_ID if kind == "image" else qt.VIDEO_ID] * (t * grid[1] * grid[2] // 4)
                row += [qt.VISION_END_ID]
            (image_grids if kind == "image" else video_grids).append(grid)
        rows.append(row + [int(rng.integers(0, 100))])
    width = max(map(len, rows)) + 1
    ids = np.full((3, width), qt.PAD_ID)
    mask = np.zeros((3, width), np.int64)
    for b, row in enumerate(rows):
        ids[b, width - len(row) :], mask[b, width - len(row) :] = row, 1
    return ids, mask, np.array(image_grids).reshape(-1, 3), (np.array(video_grids) if video_grids else None)


@pytest.mark.parametrize("family", qt.FAMILIES)
@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_match_hf(family, seed):
    rng = np.random.default_rng(seed)
    ids, mask, image_grids, video_grids = _random_batch(rng, family, with_video=seed % 2 == 1)
    types_ = mm_token_type_ids_from(ids, qt.IMAGE_ID, qt.VIDEO_ID)
    extra = {}
    if family == "qwen2_5_vl" and video_grids is not None:
        extra = {"second_per_grid_ts": [0.5 + i for i in range(len(video_grids))]}
    ours = get_rope_index(
        ids, image_grids if len(image_grids) else None, mask, spatial_merge_size=2, mm_token_type_ids=types_,
        video_grid_thw=video_grids, family=family, tokens_per_second=2.0, **extra,
    )
    ref = _hf_rope_index(
        family, ids, types_, mask, image_grids if len(image_grids) else None, video_grids,
        **({"second_per_grid_ts": torch.tensor(extra["second_per_grid_ts"])} if extra else {}),
    )
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])


def test_type_ids_default_from_image_token_and_text_only_batch():
    ids = np.array([[qt.PAD_ID, 1, 2], [3, 4, 5]])
    pos, delta = get_rope_index(ids, None, np.array([[0, 1, 1], [1, 1, 1]]), spatial_merge_size=2,
                                image_token_id=qt.IMAGE_ID)
    np.testing.assert_array_equal(pos, np.broadcast_to(np.arange(3), (3, 2, 3)))  # HF text path: arange(T)
    np.testing.assert_array_equal(delta, [[0], [0]])


def test_decode_positions_follow_hf_generation_rule():
    """HF generation: position = (attention_mask.cumsum - 1) of the new token + rope_delta."""
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    deltas = np.array([[-7], [2]])
    ours = decode_position_ids(deltas, mask, num_steps=3)
    grown = np.concatenate([mask, np.ones((2, 3), int)], axis=1)
    expected = (grown.cumsum(-1) - 1)[:, -3:] + deltas
    np.testing.assert_array_equal(ours, np.broadcast_to(expected, (3, 2, 3)))


def test_bad_inputs():
    ids = np.array([[1, qt.VISION_START_ID] + [qt.IMAGE_ID] * 3 + [qt.VISION_END_ID]])
    with pytest.raises(ValueError, match="3 image tokens but its grid"):
        get_rope_index(ids, [[1, 4, 4]], spatial_merge_size=2, image_token_id=qt.IMAGE_ID)
    with pytest.raises(ValueError, match="2 image grids given but only 1"):
        get_rope_index(ids, [[1, 2, 6], [1, 2, 2]], spatial_merge_size=2, image_token_id=qt.IMAGE_ID)
    with pytest.raises(ValueError, match="more image token runs"):
        get_rope_index(np.concatenate([ids, ids], 1), [[1, 2, 6]], spatial_merge_size=2, image_token_id=qt.IMAGE_ID)
    with pytest.raises(ValueError, match="no image_grid_thw"):
        get_rope_index(ids, None, spatial_merge_size=2, image_token_id=qt.IMAGE_ID)
    with pytest.raises(ValueError, match="needs mm_token_type_ids or image_token_id"):
        get_rope_index(ids, [[1, 2, 6]], spatial_merge_size=2)
    with pytest.raises(ValueError, match="attention_mask shape"):
        get_rope_index(ids, [[1, 2, 6]], np.ones((1, 2)), spatial_merge_size=2, image_token_id=qt.IMAGE_ID)


def test_prepare_inputs_expands_placeholders_like_the_processor():
    family = "qwen2_vl"
    proc = qt.image_processor(family)
    imgs = [qt.random_image(56, 112, 3), qt.random_image(200, 60, 4)]
    out = prepare_qwen_inputs(["w1 <|image_pad|> w2 <|image_pad|>"], imgs, tokenizer=qt.tokenizer(), image_processor=proc)
    grids = out["image_grid_thw"]
    n_image = int((out["input_ids"] == qt.IMAGE_ID).sum())
    assert n_image == int(np.prod(grids, axis=1).sum()) // 4 == out["pixel_values"].shape[0] // 4
    np.testing.assert_array_equal(out["mm_token_type_ids"], (out["input_ids"] == qt.IMAGE_ID).astype(int))
    np.testing.assert_array_equal(out["images_per_sample"], [2])
    assert expand_image_tokens("a <|image_pad|> b", [[1, 2, 4]], 2) == "a <|image_pad|><|image_pad|> b"
    with pytest.raises(ValueError, match="2 images"):
        prepare_qwen_inputs(["w1 <|image_pad|>"], imgs, tokenizer=qt.tokenizer(), image_processor=proc)
    with pytest.raises(ValueError, match="do not match"):
        prepare_qwen_inputs(["<|image_pad|>", "w1"], [[], imgs[:1]], tokenizer=qt.tokenizer(), image_processor=proc)
