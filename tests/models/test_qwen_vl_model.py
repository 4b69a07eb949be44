"""The whole Qwen2-VL / Qwen2.5-VL / Qwen3-VL (tiny random, float32) against HF, loaded through `models.load`.

Inputs are what the HF processor gives (models/qwen_inputs.py, see
the image processor plus token expansion), from images of several sizes and aspect ratios (square,
2:1, 1:3, tiny, one above max_pixels that the processor shrinks), several
images in one sample and a text-only sample in the same batch. Checked:
logits, batch == each sample alone, the two-stage forward, HF's inputs_embeds
/ M-RoPE ids / deepstack (captured at HF's language model), VisualTokens'
index/rows/cols against HF's positions and grid_thw, the Hub key layout, errors.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

import models
from models.qwen_inputs import prepare_qwen_inputs
from models.qwen_vision import exact_capacities
from models.qwen_vl_model import QwenVLModel
from models.visual_tokens import KIND_BASE
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)
TOL = 1e-4
IMG = "<|vision_start|><|image_pad|><|vision_end|>"
SIZES = dict(qt.IMAGE_SIZES, tall_3to1=(270, 90), huge=(600, 560))  # huge: above max_pixels, shrunk
IMAGES = {name: qt.random_image(h, w, seed=i) for i, (name, (h, w)) in enumerate(SIZES.items())}
BATCHES = {
    "mixed": ([f"w1 {IMG} w2 {IMG} w3", f"{IMG} w4", "w5 w6 w7 w8"], [["square", "tall_3to1"], ["tall_1to3"], []]),
    "extremes": ([f"{IMG} w1", f"w2 {IMG} w3", f"w4 {IMG}"], [["tiny"], ["large"], ["huge"]]),
}


@pytest.fixture(scope="module", params=qt.FAMILIES)
def setup(request, tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    family = request.param
    torch.manual_seed(0)
    hf = qt.randomize_(AutoModelForImageTextToText.from_config(qt.hf_config(family)), 0).eval()
    folder = tmp_path_factory.mktemp(family)
    hf.save_pretrained(folder)
    return family, hf, models.load(folder), folder


def _inputs(family, texts, image_names):
    images = [[IMAGES[n] for n in names] for names in image_names]
    out = prepare_qwen_inputs(texts, images, tokenizer=qt.tokenizer(), image_processor=qt.image_processor(family))
    out.pop("images_per_sample", None)
    return out


def _batch(family, name):
    return _inputs(family, *BATCHES[name])


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


def _max_err(a, b, mask):
    return float(np.abs(np.asarray(a) - b)[np.asarray(mask).astype(bool)].max())


def test_loads_the_full_model_with_converter_paths(setup):
    family, _, model, _ = setup
    assert isinstance(model, QwenVLModel) and model.config.model_type == family
    paths = {p[0] for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert paths == {"visual", "language_model"}


@pytest.mark.parametrize("name", list(BATCHES))
def test_logits_match_hf(setup, name):
    family, hf, model, _ = setup
    inputs = _batch(family, name)
    ref, _ = _hf_forward(hf, inputs)
    out = model(**inputs)
    assert out.dtype == np.float32 and out.shape == ref.shape
    err = _max_err(out, ref, inputs["attention_mask"])
    assert err <= TOL, f"{family} {name}: max-abs logits error {err}"


def test_text_only_batch_and_no_mm_token_type_ids(setup):
    family, hf, model, _ = setup
    inputs = _inputs(family, ["w1 w2 w3", "w4"], [[], []])
    inputs.pop("mm_token_type_ids")
    ref, _ = _hf_forward(hf, inputs)
    assert _max_err(model(**inputs), ref, inputs["attention_mask"]) <= TOL
    mixed = _batch(family, "mixed")
    without = {k: v for k, v in mixed.items() if k != "mm_token_type_ids"}
    np.testing.assert_array_equal(np.asarray(model(**without)), np.asarray(model(**mixed)))


def test_prepare_matches_what_hf_feeds_its_language_model(setup):
    """inputs_embeds, M-RoPE ids, deepstack additions and next position equal HF's; VisualTokens
    index/rows/cols agree with HF's visual positions and image_grid_thw."""
    family, hf, model, _ = setup
    inputs = _batch(family, "mixed")
    _, cap = _hf_forward(hf, inputs)
    p = model.prepare(**inputs, visual_capacity=120, max_images=3)
    assert np.abs(np.asarray(p.inputs_embeds) - cap["inputs_embeds"].numpy()).max() <= 1e-5
    hf_pos = cap["position_ids"].numpy()
    np.testing.assert_array_equal(np.asarray(p.position_ids), hf_pos)
    n_valid = inputs["attention_mask"].sum(1)
    np.testing.assert_array_equal(p.next_position, n_valid + hf.model.rope_deltas.numpy()[:, 0])

    tok, ids = p.visual, inputs["input_ids"]
    merged = inputs["image_grid_thw"] // np.array([1, 2, 2])
    image_of_sample = {0: [0, 1], 1: [2], 2: []}
    assert tok.index.shape == (3, 120) and tok.grid_rows.shape == (3, 3, 2)
    for b, images in image_of_sample.items():
        valid = tok.valid[b]
        np.testing.assert_array_equal(tok.index[b][valid], np.nonzero(ids[b] == qt.IMAGE_ID)[0])
        assert (tok.kind[b][valid] == KIND_BASE).all() and not tok.valid[b, valid.sum():].any()
        for j, i in enumerate(images):
            t, h, w = merged[i]
            assert (tok.grid_rows[b, j, 0], tok.grid_cols[b, j, 0], tok.frames[b, j]) == (t * h, w, t)
            where = tok.index[b][valid & (tok.image[b] == j)]
            assert len(where) == t * h * w
            pos_h, pos_w = hf_pos[1, b, where], hf_pos[2, b, where]  # HF's own row/col placement
            np.testing.assert_array_equal(tok.row[b][valid & (tok.image[b] == j)], pos_h - pos_h.min())
            np.testing.assert_array_equal(tok.col[b][valid & (tok.image[b] == j)], pos_w - pos_w.min())
    if family != "qwen3_vl":
        assert p.layer_additions is None
        return
    # deepstack: feature j is added after layer j at HF's visual positions, zeros elsewhere
    deepstack = [d.numpy() for d in cap["deepstack_visual_embeds"]]
    visual = cap["visual_pos_masks"].numpy()
    additions = np.asarray(p.layer_additions)
    assert additions.shape == (len(deepstack), *p.inputs_embeds.shape) and len(deepstack) == 2
    for j, d in enumerate(deepstack):
        assert np.abs(additions[j][visual] - d).max() <= 1e-5 and np.abs(d).max() > 1e-2
        assert (additions[j][~visual] == 0).all()
    no_deepstack = model.language_model(inputs_embeds=p.inputs_embeds, attention_mask=p.attention_mask,
                                        position_ids=p.position_ids)
    assert np.abs(np.asarray(no_deepstack) - np.asarray(model(**inputs))).max() > 1e-3  # it matters


def test_two_stage_forward_is_the_forward(setup):
    family, _, model, _ = setup
    inputs = _batch(family, "extremes")
    p = model.prepare(**inputs)
    logits = model.language_model(inputs_embeds=p.inputs_embeds, attention_mask=p.attention_mask,
                                  position_ids=p.position_ids, layer_additions=p.layer_additions)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(model(**inputs)))
    as_jax = {k: jnp.asarray(v) for k, v in inputs.items()}
    np.testing.assert_array_equal(np.asarray(model(**as_jax)), np.asarray(logits))  # jax arrays work as well


def test_batch_equals_each_sample_alone(setup):
    family, _, model, _ = setup
    texts, image_names = BATCHES["extremes"]
    full = np.asarray(model(**_batch(family, "extremes")))
    for b, (text, names) in enumerate(zip(texts, image_names)):
        alone = _inputs(family, [text], [names])
        n = alone["input_ids"].shape[1]
        err = float(np.abs(np.asarray(model(**alone))[0] - full[b, -n:]).max())  # left padding
        assert err <= TOL, f"{family} sample {b} ({names}): batch vs alone {err}"


def test_static_capacities_do_not_change_logits(setup):
    family, _, model, _ = setup
    inputs = _batch(family, "mixed")
    exact = exact_capacities(inputs["image_grid_thw"], model.config.vision)
    p = model.prepare(**inputs, visual_capacity=200, max_images=4, unit_capacity=exact["unit_capacity"] + 3,
                      unit_patch_capacity=exact["unit_patch_capacity"] + 64,
                      unit_window_capacity=64 if family == "qwen2_5_vl" else None)
    logits = model.language_model(inputs_embeds=p.inputs_embeds, attention_mask=p.attention_mask,
                                  position_ids=p.position_ids, layer_additions=p.layer_additions)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(model(**inputs)), atol=1e-5)


def test_hub_key_layout_loads_the_same_model(setup, tmp_path):
    """The Hub's Qwen-VL checkpoints name the decoder `model.layers.*` and the tower `visual.*`;
    Qwen2-VL / Qwen2.5-VL configs there are flat (transformers-4 layout)."""
    import json

    family, _, model, folder = setup
    tensors = load_file(folder / "model.safetensors")

    def hub_name(key):
        if key.startswith("model.language_model."):
            return "model." + key.removeprefix("model.language_model.")
        return key.removeprefix("model.") if key.startswith("model.visual.") else key

    hub = {hub_name(k): v for k, v in tensors.items()}
    assert any(k.startswith("model.layers.") for k in hub) and any(k.startswith("visual.blocks.") for k in hub)
    save_file(hub, tmp_path / "model.safetensors", metadata={"format": "pt"})
    if family == "qwen3_vl":
        (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    else:
        (tmp_path / "config.json").write_text(json.dumps(qt.hub_flat_config(family)))
    hub_model = models.load(tmp_path)
    assert hub_model.config == model.config
    inputs = _batch(family, "mixed")
    np.testing.assert_array_equal(np.asarray(hub_model(**inputs)), np.asarray(model(**inputs)))


def test_bad_inputs_raise(setup):
    family, _, model, _ = setup
    inputs = _batch(family, "mixed")
    with pytest.raises(ValueError, match="unexpected inputs"):
        model(**inputs, image_sizes=inputs["image_grid_thw"])
    with pytest.raises(ValueError, match="image_grid_thw is required"):
        model(**{k: v for k, v in inputs.items() if k != "image_grid_thw"})
    with pytest.raises(ValueError, match="attention_mask of shape"):
        model(**{**inputs, "attention_mask": inputs["attention_mask"][:2]})
    ids = inputs["input_ids"].copy()
    ids[1, np.nonzero(ids[1] == qt.IMAGE_ID)[0][0]] = 3
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(**{**inputs, "input_ids": ids, "mm_token_type_ids": None})
    with pytest.raises(ValueError, match="NaN or inf"):
        model(**{**inputs, "pixel_values": np.full_like(inputs["pixel_values"], np.inf)})
    with pytest.raises(ValueError, match="capacity 5 is smaller"):
        model.prepare(**inputs, visual_capacity=5)


def test_fixed_capacities_compile_once_across_image_sizes(setup, monkeypatch):
    """Fixed text length, patch / window / visual capacities: one trace of the jitted prepare for all sizes."""
    from models import qwen_vl_model
    from tests.models.padding import left_pad

    family, _, model, _ = setup
    cases = []
    for name in ("tiny", "wide_2to1", "tall_3to1", "square"):
        inputs = _inputs(family, [f"w1 {IMG} w2"], [[name]])
        cases.append((name, inputs, np.asarray(model(**inputs))[0]))
    patches = max(c[1]["pixel_values"].shape[0] for c in cases)
    visual = patches // 4  # one image per case: its patches are one unit
    traces = []
    original = qwen_vl_model.place_visual
    monkeypatch.setattr(qwen_vl_model, "place_visual", lambda *a: traces.append(1) or original(*a))
    for name, inputs, alone in cases:
        p = model.prepare(**left_pad(inputs, visual + 8, qt.PAD_ID), visual_capacity=visual, unit_capacity=1,
                          unit_patch_capacity=patches,
                          unit_window_capacity=patches // 64 + 8 if family == "qwen2_5_vl" else None)
        logits = model.language_model(inputs_embeds=p.inputs_embeds, attention_mask=p.attention_mask,
                                      position_ids=p.position_ids, layer_additions=p.layer_additions)
        assert np.abs(np.asarray(logits)[0, -len(alone):] - alone).max() <= TOL, name
    per_trace = 3 if family == "qwen3_vl" else 1  # place_visual runs once per deepstack feature too
    assert len(traces) == per_trace, f"{len(traces) // per_trace} traces for 4 image sizes"


def test_bfloat16_is_as_close_to_float32_as_hf_bfloat16(setup):
    """models.load(dtype="bfloat16"): bf16 params end to end, logits no further from HF float32 than
    twice HF's own bf16 error."""
    import copy

    family, hf, _, folder = setup
    model = models.load(folder, dtype="bfloat16")
    dtypes = {v.get_value().dtype for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert dtypes == {np.dtype("bfloat16")}
    inputs = _batch(family, "mixed")
    ref, _ = _hf_forward(hf, inputs)
    hf16 = copy.deepcopy(hf).to(torch.bfloat16)
    with torch.no_grad():
        ref16 = hf16(**{k: torch.as_tensor(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.as_tensor(v)
                        for k, v in inputs.items()})
    mask = inputs["attention_mask"]
    hf_err = _max_err(ref16.logits.float().numpy(), ref, mask)
    ours = model(**inputs)
    assert ours.dtype == np.float32
    assert _max_err(ours, ref, mask) <= 2 * hf_err, (family, _max_err(ours, ref, mask), hf_err)


def test_converted_folder_gives_the_same_model(setup, tmp_path):
    from convert import convert_checkpoint

    family, _, model, folder = setup
    converted = models.load(convert_checkpoint(folder, tmp_path / "out", progress=False))
    assert isinstance(converted, QwenVLModel) and converted.config == model.config
    inputs = _batch(family, "extremes")
    np.testing.assert_array_equal(np.asarray(converted(**inputs)), np.asarray(model(**inputs)))
