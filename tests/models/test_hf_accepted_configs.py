"""Configurations and inputs HF transformers accepts and our port used to refuse (issue 14): each one
built as a tiny random HF model, saved, loaded through `models.load`, and compared in float32.

1. Qwen2.5-VL whose `fullatt_block_indexes` name blocks past the vision depth (HF's model tester keeps
   the default (7, 15, 23, 31) on a 2-block tower): HF never reaches those blocks, so they are ignored;
   we ignore them too and warn.
2. Qwen3-VL whose `mrope_section` (16, 8, 8) is larger than head_dim/2 = 4 (HF's model tester): HF's
   interleaved M-RoPE slices stop at head_dim/2, so the sections are clamped; we clamp the same way
   and warn.
3. Image tokens under attention-mask padding, every family. HF writes image features by
   `input_ids == image_token_id` whatever the mask says (masked_scatter). Qwen's M-RoPE positions
   (HF `get_rope_index`) see the unmasked tokens only: a masked image gets position 0 and its grid is
   not consumed, so the next unmasked image run of the batch takes it (HF's one grid iterator over the
   batch) - here the masked image B's grid (4 x 6) goes to image C (6 x 4), and we reproduce that. The
   logits are asserted where attention_mask is 1. Masked query rows are padding: HF still computes
   them (position 0, attending to the unmasked keys up to them; rows with none are fully masked);
   ours agree there too in these batches (printed with -s), which is not asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from models.mrope_index import mm_token_type_ids_from
from tests.models import llava_tiny as lt
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)
TOL = 1e-4
PAD, VS, VE, IMG = 2, 5, 6, 3  # token ids of the HF model testers' Qwen configs (vocab 99)

# The Qwen2.5-VL / Qwen3-VL model testers' configs (tests/models/qwen2_5_vl, qwen3_vl in transformers),
# with window attention given work to do (images larger than one 8 x 8 window).
QWEN25_TEXT = dict(
    vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, hidden_act="silu", pad_token_id=PAD, bos_token_id=0,
    eos_token_id=1, rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 1, 1]),
)
QWEN25_VISION = dict(
    depth=2, hidden_act="silu", intermediate_size=32, out_hidden_size=32, hidden_size=32, num_heads=4, patch_size=14,
    spatial_merge_size=1, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1, 7, 15],
)
QWEN3_TEXT = dict(
    vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, max_position_embeddings=512, hidden_act="silu", pad_token_id=PAD,
    bos_token_id=0, eos_token_id=1,
    rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[16, 8, 8], mrope_interleaved=True),
)
QWEN3_VISION = dict(
    depth=2, hidden_act="gelu_pytorch_tanh", intermediate_size=32, out_hidden_size=32, hidden_size=32, num_heads=4,
    patch_size=16, spatial_merge_size=1, temporal_patch_size=2, num_position_embeddings=16,
    deepstack_visual_indexes=[0, 1],
)
FULLATT_WARNING = r"fullatt_block_indexes \[7, 15\] are outside the tower's 2 blocks .* ignored"
MROPE_WARNING = r"mrope_section \[16, 8, 8\] does not fit the 4 rotary frequencies .* \[2, 1, 1\]"
MASK_WARNING = "image/video tokens under attention-mask padding"
REGRID_WARNING = r"positions image #2 of the batch \(counting from 0\) with the grid of image #1"


def _hf_qwen(family: str):
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig, Qwen3VLConfig

    if family == "qwen2_vl":
        config = qt.hf_config(family)
    else:
        cls, text, vision = {
            "qwen2_5_vl": (Qwen2_5_VLConfig, QWEN25_TEXT, QWEN25_VISION),
            "qwen3_vl": (Qwen3VLConfig, QWEN3_TEXT, QWEN3_VISION),
        }[family]
        config = cls(text_config=text, vision_config=vision, image_token_id=IMG, video_token_id=4,
                     vision_start_token_id=VS, vision_end_token_id=VE, tie_word_embeddings=True)
        config._attn_implementation = "eager"
    torch.manual_seed(0)
    return qt.randomize_(AutoModelForImageTextToText.from_config(config), 0).eval()


def _load(hf, tmp_path):
    hf.save_pretrained(tmp_path)
    return models.load(tmp_path)


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory):
    hf = _hf_qwen("qwen2_5_vl")
    with pytest.warns(UserWarning, match=FULLATT_WARNING):
        ours = _load(hf, tmp_path_factory.mktemp("qwen2_5_vl"))
    return hf, ours


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    hf = _hf_qwen("qwen3_vl")
    with pytest.warns(UserWarning, match=MROPE_WARNING):
        ours = _load(hf, tmp_path_factory.mktemp("qwen3_vl"))
    return hf, ours


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    hf = _hf_qwen("qwen2_vl")
    return hf, _load(hf, tmp_path_factory.mktemp("qwen2_vl"))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    hf = lt.hf_model(seed=3)
    return hf, _load(hf, tmp_path_factory.mktemp("llava_next"))


def _qwen_inputs(hf, rows, grids, masked=()):
    """rows: per row a list of words: an int token id or ("img", k) for image k's tokens wrapped in
    vision start/end; grids: per image its (t, h, w) in merged tokens; masked: (row, first, last) token
    ranges (inclusive, row-local) whose attention_mask is 0. Left-padded to the longest row."""
    c = hf.config
    m = c.vision_config.spatial_merge_size
    ids = []
    for row in rows:
        seq = []
        for word in row:
            if isinstance(word, tuple):
                t, h, w = grids[word[1]]
                seq += [c.vision_start_token_id] + [c.image_token_id] * (t * h * w) + [c.vision_end_token_id]
            else:
                seq.append(word)
        ids.append(seq)
    length = max(map(len, ids))
    input_ids = np.full((len(ids), length), c.text_config.pad_token_id, np.int64)
    mask = np.zeros((len(ids), length), np.int64)
    for b, seq in enumerate(ids):
        input_ids[b, length - len(seq):], mask[b, length - len(seq):] = seq, 1
    for b, first, last in masked:
        start = length - len(ids[b])
        mask[b, start + first : start + last + 1] = 0
    grid_thw = np.array([(t, h * m, w * m) for t, h, w in grids], np.int64)
    v = c.vision_config
    patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size**2
    pixels = np.random.default_rng(0).standard_normal((int(np.prod(grid_thw, 1).sum()), patch_dim)).astype(np.float32)
    return dict(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_grid_thw=grid_thw,
                mm_token_type_ids=mm_token_type_ids_from(input_ids, c.image_token_id, c.video_token_id))


def _hf_logits(hf, inputs, **extra):
    with torch.no_grad():
        return hf(**{k: torch.as_tensor(v) for k, v in inputs.items()}, **extra).logits.numpy()


def _err(ours, ref, mask):
    return float(np.abs(np.asarray(ours) - ref)[np.asarray(mask).astype(bool)].max())


def test_qwen2_5_vl_ignores_fullatt_blocks_past_the_depth(qwen25):
    hf, ours = qwen25
    assert ours.config.vision.fullatt_block_indexes == (1,) and ours.config.vision.uses_window_attention
    # two images larger than one 8 x 8 window, so windowed and full attention differ
    inputs = _qwen_inputs(hf, [[7, ("img", 0), 8, 9], [10, ("img", 1), 11]], [(1, 10, 12), (1, 9, 7)])
    err = _err(ours(**inputs), _hf_logits(hf, inputs), inputs["attention_mask"])
    print(f"qwen2_5_vl fullatt past depth: max-abs logits error {err:.2e}")
    assert err <= TOL


def test_qwen3_vl_clamps_an_oversized_mrope_section(qwen3):
    from models.rope import frequency_axes

    hf, ours = qwen3
    assert ours.config.text.mrope_section == (16, 8, 8)
    np.testing.assert_array_equal(frequency_axes(ours.config.text), [0, 1, 2, 0])  # HF's t h w t
    inputs = _qwen_inputs(hf, [[7, ("img", 0), 8, 9], [10, ("img", 1), 11, 12, 13]], [(1, 6, 6), (1, 3, 5)])
    err = _err(ours(**inputs), _hf_logits(hf, inputs), inputs["attention_mask"])
    print(f"qwen3_vl mrope_section (16, 8, 8), head_dim 8: max-abs logits error {err:.2e}")
    assert err <= TOL


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_image_tokens_under_the_mask(family, request):
    hf, ours = request.getfixturevalue({"qwen2_vl": "qwen2", "qwen2_5_vl": "qwen25", "qwen3_vl": "qwen3"}[family])
    w = [7, 8, 9, 10, 11, 12]
    rows = [
        [w[0], ("img", 0), w[1], w[2]],  # A: unmasked
        [("img", 1), w[3], w[4], w[5], w[0]],  # B: masked (with its start/end and one word) at the row's start
        [w[1], ("img", 2), w[2], ("img", 3), w[3], w[4]],  # C unmasked, D masked in the middle
    ]
    grids = [(1, 3, 5), (1, 4, 6), (1, 6, 4), (1, 2, 3)]
    b_len, c_len, d_len = (4 * 6 + 2), (6 * 4 + 2), (2 * 3 + 2)
    masked = [(1, 0, b_len), (2, 1 + c_len + 1, 1 + c_len + d_len)]
    inputs = _qwen_inputs(hf, rows, grids, masked)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ((ids == hf.config.image_token_id) & (mask == 0)).sum() == 4 * 6 + 2 * 3
    ref = _hf_logits(hf, inputs)
    with pytest.warns(UserWarning, match=MASK_WARNING), pytest.warns(UserWarning, match=REGRID_WARNING):
        out = ours(**inputs)
    err = _err(out, ref, mask)
    print(f"{family} image tokens under the mask: max-abs logits error {err:.2e} (mask == 1), "
          f"{float(np.abs(np.asarray(out) - ref).max()):.2e} (all positions)")
    assert err <= TOL


def test_llava_next_image_tokens_under_the_mask(llava):
    """LLaVA-NeXT places features by input_ids (as HF's masked_scatter) and has no grid order to keep;
    positions count unmasked tokens (HF generate's cumsum(mask) - 1), equal to HF's bare forward (0..T-1)
    for a masked prefix and to HF with generate's position_ids for a masked middle."""
    hf, ours = llava
    batch = lt.processor()(images=lt.test_images(("square", "wide_2to1", "tall_1to3")),
                           text=["<image> w1 w2 <image> w3", "w4 <image> w5 w6 w7"], return_tensors="pt",
                           padding=True)
    inputs = {k: v.numpy() for k, v in batch.items()}
    ids, mask = inputs["input_ids"], inputs["attention_mask"].copy()
    first = np.flatnonzero(ids[0] == lt.IMAGE_ID)
    mask[0, : first[0] + int((ids[0, first[0]:] == lt.IMAGE_ID).argmin()) + 1] = 0  # image 1 + 1 word: masked prefix
    row1 = np.flatnonzero(ids[1] == lt.IMAGE_ID)
    mask[1, row1[0] : row1[-1] + 1] = 0  # image 3: a masked middle
    inputs["attention_mask"] = mask
    assert ((ids == lt.IMAGE_ID) & (mask == 0)).any(axis=1).all()
    out = np.asarray(ours(**inputs))
    prefix = _err(out[:1], _hf_logits(hf, inputs)[:1], mask[:1])  # row 0: its mask is 0 on a prefix only
    generate_positions = torch.as_tensor(np.where(mask, mask.cumsum(1) - 1, 0))
    middle = _err(out, _hf_logits(hf, inputs, position_ids=generate_positions), mask)
    print(f"llava_next image tokens under the mask: max-abs logits error {prefix:.2e} (masked prefix, HF forward), "
          f"{middle:.2e} (both rows, HF with generate's position ids)")
    assert prefix <= TOL and middle <= TOL


HF_ROTARY = {
    "qwen2_vl": "transformers.models.qwen2_vl.modeling_qwen2_vl.Qwen2VLRotaryEmbedding",
    "qwen2_5_vl": "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLRotaryEmbedding",
    "qwen3_vl": "transformers.models.qwen3_vl.modeling_qwen3_vl.Qwen3VLTextRotaryEmbedding",
}


@pytest.mark.parametrize("family, section, warns", [
    ("qwen2_vl", [1, 1, 1, 1], False),  # HF: split i takes axis i % 3 (t h w t)
    ("qwen2_5_vl", [2, 2], False),  # only t and h
    ("qwen3_vl", [16, 8, 8], True),  # the model tester's: clamped to t h w t
    ("qwen3_vl", [0, 3, 3], True),  # h, w slices clamped at head_dim/2; section[0] never read
    ("qwen3_vl", [2, 1, 1, 7], True),  # entries past the third never read
    ("qwen3_vl", [2, 1, 1], False),
])
def test_mrope_tables_equal_hf_for_every_section_hf_runs(family, section, warns):
    """cos/sin per frequency equal HF's rotary embedding for M-RoPE sections HF runs with (head_dim 8)."""
    import importlib
    import warnings

    from transformers import AutoConfig

    from models.config import load_config
    from models.rope import rope_tables

    text = dict(QWEN3_TEXT, rope_parameters=dict(QWEN3_TEXT["rope_parameters"], mrope_section=section))
    module, name = HF_ROTARY[family].rsplit(".", 1)
    rotary = getattr(importlib.import_module(module), name)(AutoConfig.for_model(family, text_config=text).text_config)
    positions = np.random.default_rng(0).integers(0, 300, size=(3, 2, 9))
    cos_hf, sin_hf = rotary(torch.zeros(1), torch.from_numpy(positions))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(dict(model_type=family, text_config=text)).text
    assert any("mrope_section" in str(w.message) for w in caught) == warns
    cos, sin = rope_tables(config, positions)
    np.testing.assert_allclose(np.asarray(cos), cos_hf.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), sin_hf.numpy(), atol=1e-6)


def test_qwen2_vl_sections_hf_cannot_split_are_still_refused():
    """Qwen2/2.5-VL split head_dim/2 frequencies by the sections (torch.split): HF fails on any other sum."""
    from models.config import load_config

    text = dict(QWEN3_TEXT, rope_parameters=dict(rope_type="default", rope_theta=1e4, mrope_section=[16, 8, 8]))
    with pytest.raises(ValueError, match=r"must sum to head_dim/2 = 4 \(HF's"):
        load_config(dict(model_type="qwen2_vl", text_config=text))


def test_rope_index_follows_hf_when_runs_and_grids_disagree_but_the_row_adds_up():
    """HF's get_rope_index only fails when a row's positions do not fit its unmasked tokens; runs of 2 and
    6 image tokens with grids of 4 and 4 fit, so HF positions them with those grids. So do we, warning."""
    from models.mrope_index import get_rope_index
    from tests.models.test_mrope_index import _hf_rope_index

    ids = np.array([[1, qt.VISION_START_ID] + [qt.IMAGE_ID] * 2 + [qt.VISION_END_ID, qt.VISION_START_ID]
                    + [qt.IMAGE_ID] * 6 + [qt.VISION_END_ID, 2]])
    types, mask, grids = (ids == qt.IMAGE_ID).astype(np.int64), np.ones_like(ids), [[1, 4, 4], [1, 2, 8]]
    with pytest.warns(UserWarning, match="2 image tokens but its grid .* HF positions the runs with these grids"):
        ours = get_rope_index(ids, grids, mask, spatial_merge_size=2, mm_token_type_ids=types)
    ref = _hf_rope_index("qwen2_vl", ids, types, mask, grids)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])
    with pytest.raises(ValueError, match="3 image tokens but its grid"):  # 3 vs 4: HF cannot fit it either
        get_rope_index(np.array([[1, qt.VISION_START_ID] + [qt.IMAGE_ID] * 3 + [qt.VISION_END_ID]]), grids[:1],
                       spatial_merge_size=2, image_token_id=qt.IMAGE_ID)
