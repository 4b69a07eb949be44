"""The whole LLaVA-NeXT (tiny random, float32) against HF transformers, loaded through `models.load`.

Inputs come from the real HF processor, images of several sizes and aspect
ratios (square, 2:1, 1:3, tiny 20x20, one larger than every pinpoint, odd),
several images in one sample and a text-only sample in the same batch.
Checked: logits, batch == each sample alone, the two-stage forward, HF's
placement of every visual token (captured inputs_embeds), VisualTokens'
kinds/rows/cols against HF's pack_image_features, the Hub key layout, errors.
"""

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

import models
from models.llava_next_model import LlavaNextModel
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE
from tests.models import llava_tiny as lt

torch.set_num_threads(1)
TOL = 1e-4

# (texts, image names): several images per sample, mixed sizes, a text-only row
BATCHES = {
    "mixed": (["w1 <image> w2 <image> w3", "<image> w4 w5", "w6 w7 w8 w9"], ("square", "wide_2to1", "tall_1to3")),
    "extremes": (["<image> w1", "w2 <image> w3", "w4 <image>"], ("tiny", "large", "odd")),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    hf = lt.hf_model(seed=3)
    folder = tmp_path_factory.mktemp("llava_next")
    hf.save_pretrained(folder)
    return hf, models.load(folder), folder


def _batch(name, proc=lt.processor()):
    texts, image_names = BATCHES[name]
    return proc(images=lt.test_images(image_names), text=texts, return_tensors="pt", padding=True)


def _hf_forward(hf, batch):
    """HF logits and the inputs_embeds HF hands its language model."""
    captured = {}

    def hook(_module, _args, kwargs):
        captured["inputs_embeds"] = kwargs["inputs_embeds"].detach().numpy().copy()

    handle = hf.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = hf(**batch).logits.numpy()
    finally:
        handle.remove()
    return logits, captured["inputs_embeds"]


def _np(batch):
    return {k: v.numpy() for k, v in batch.items()}


def _max_err(a, b, mask):
    return float(np.abs(np.asarray(a) - b)[np.asarray(mask).astype(bool)].max())


def test_loads_the_full_model_with_converter_paths(setup):
    _, model, _ = setup
    assert isinstance(model, LlavaNextModel) and model.config.model_type == "llava_next"
    paths = {p[0] for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert paths == {"vision_tower", "multi_modal_projector", "image_newline", "language_model"}


@pytest.mark.parametrize("name", list(BATCHES))
def test_logits_match_hf(setup, name):
    hf, model, _ = setup
    batch = _batch(name)
    ref, _ = _hf_forward(hf, batch)
    out = model(**_np(batch))
    assert out.dtype == np.float32 and out.shape == ref.shape
    err = _max_err(out, ref, batch["attention_mask"])
    assert err <= TOL, f"{name}: max-abs logits error {err}"


def test_two_stage_forward_is_the_forward(setup):
    _, model, _ = setup
    inputs = _np(_batch("mixed"))
    prepared = model.prepare(**inputs)
    logits = model.language_model(
        inputs_embeds=prepared.inputs_embeds, attention_mask=prepared.attention_mask,
        position_ids=prepared.position_ids, layer_additions=prepared.layer_additions,
    )
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(model(**inputs)))
    as_jax = {k: jax.numpy.asarray(v) for k, v in inputs.items()}
    np.testing.assert_array_equal(np.asarray(model(**as_jax)), np.asarray(logits))  # jax arrays work as well
    assert prepared.layer_additions is None
    mask = inputs["attention_mask"]
    np.testing.assert_array_equal(prepared.next_position, mask.sum(1))  # decoding continues after real tokens
    want = np.where(mask == 1, np.cumsum(mask, 1) - 1, 0)  # HF generate's position ids
    np.testing.assert_array_equal(prepared.position_ids, want)
    assert jax.tree.structure(prepared) == jax.tree.structure(model.prepare(**inputs))  # a pytree


def test_batch_equals_each_sample_alone(setup):
    _, model, _ = setup
    texts, names = BATCHES["extremes"]
    batch = _np(_batch("extremes"))
    full = np.asarray(model(**batch))
    proc, images = lt.processor(), lt.test_images(names)  # the same images (seeded by batch order)
    for b, (text, name) in enumerate(zip(texts, names)):
        alone = _np(proc(images=[images[b]], text=[text], return_tensors="pt"))
        n = alone["input_ids"].shape[1]
        err = float(np.abs(np.asarray(model(**alone))[0] - full[b, -n:]).max())  # left padding
        assert err <= TOL, f"sample {b} ({name}): batch vs alone {err}"


def test_visual_tokens_follow_hf_placement_and_packing(setup):
    """Every valid slot sits where HF scatters an image feature and holds HF's packed feature for its
    kind/row/col (base g x g grid, unpadded tile grid, newline column)."""
    hf, model, _ = setup
    batch = _batch("mixed")
    _, hf_embeds = _hf_forward(hf, batch)
    inputs = _np(batch)
    prepared = model.prepare(**inputs, visual_capacity=700, max_images=3)
    assert np.abs(np.asarray(prepared.inputs_embeds) - hf_embeds).max() <= 1e-5
    tok = prepared.visual
    assert tok.index.shape == (3, 700) and tok.grid_rows.shape == (3, 3, 2)
    with torch.no_grad():
        per_image = hf.model.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output
    newline = hf.model.image_newline.detach().numpy()
    assert np.abs(newline).max() > 1e-2  # non-trivial, so a misplaced newline shows
    g = lt.CROP // lt.PATCH
    image_of_sample = {0: [0, 1], 1: [2], 2: []}
    ids = inputs["input_ids"]
    for b, images in image_of_sample.items():
        valid = tok.valid[b]
        np.testing.assert_array_equal(np.sort(tok.index[b][valid]), np.nonzero(ids[b] == lt.IMAGE_ID)[0])
        assert valid.sum() == sum(len(per_image[i]) for i in images)
        for j, i in enumerate(images):
            feats = per_image[i].numpy()
            rows, cols = int(tok.grid_rows[b, j, 1]), int(tok.grid_cols[b, j, 1])
            assert (tok.grid_rows[b, j, 0], tok.grid_cols[b, j, 0]) == (g, g)
            assert len(feats) == g * g + rows * (cols + 1)
            tile_grid = feats[g * g :].reshape(rows, cols + 1, -1)  # HF: newline is the last column
            mine = valid & (tok.image[b] == j)
            kind, row, col = tok.kind[b][mine], tok.row[b][mine], tok.col[b][mine]
            got = hf_embeds[b, tok.index[b][mine]]
            base, tile, nl = kind == KIND_BASE, kind == KIND_TILE, kind == KIND_NEWLINE
            assert base.sum() == g * g and tile.sum() == rows * cols and nl.sum() == rows
            np.testing.assert_allclose(got[base], feats[: g * g][row[base] * g + col[base]], atol=1e-5)
            np.testing.assert_allclose(got[tile], tile_grid[row[tile], col[tile]], atol=1e-5)
            np.testing.assert_allclose(got[nl], np.broadcast_to(newline, got[nl].shape), atol=1e-6)
            assert np.all(col[nl] == cols)
        assert not tok.valid[b, valid.sum():].any() and np.all(tok.image[b][~valid] == -1)
    assert tok.frames.tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]


def test_static_capacity_does_not_change_logits(setup):
    _, model, _ = setup
    inputs = _np(_batch("extremes"))
    np.testing.assert_allclose(
        np.asarray(model(**inputs)), np.asarray(model.language_model(**_lm_args(model.prepare(
            **inputs, visual_capacity=900, max_images=2)))), atol=1e-6)


def _lm_args(p):
    return dict(inputs_embeds=p.inputs_embeds, attention_mask=p.attention_mask, position_ids=p.position_ids,
                layer_additions=p.layer_additions)


def test_hub_key_layout_loads_the_same_model(setup, tmp_path):
    """llava-hf checkpoints name the tower `vision_tower.vision_model.*`; their configs are
    transformers-4 style (`rope_theta` in text_config, no `rope_parameters`)."""
    import json
    _, model, folder = setup
    tensors = load_file(folder / "model.safetensors")
    hub = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in tensors.items()}
    assert any(k.startswith("vision_tower.vision_model.encoder.layers.") for k in hub)
    assert any(k.startswith("language_model.model.layers.") for k in hub)
    save_file(hub, tmp_path / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["rope_theta"] = config["text_config"].pop("rope_parameters")["rope_theta"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    hub_model = models.load(tmp_path)
    assert hub_model.config == model.config
    inputs = _np(_batch("mixed"))
    np.testing.assert_array_equal(np.asarray(hub_model(**inputs)), np.asarray(model(**inputs)))


def test_bad_inputs_raise(setup):
    _, model, _ = setup
    inputs = _np(_batch("mixed"))
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match="unexpected inputs"):
        model(**inputs, pixel_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match="attention_mask of shape"):
        model(**{**inputs, "attention_mask": inputs["attention_mask"][:, 1:]})
    with pytest.raises(ValueError, match="input_ids is required"):
        model(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
    ids = inputs["input_ids"].copy()
    ids[1, np.nonzero(ids[1] == lt.IMAGE_ID)[0][0]] = 3
    with pytest.raises(ValueError, match="Image features and image tokens do not match: sample 1"):
        model(**{**inputs, "input_ids": ids})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(**{**inputs, "input_ids": np.where(ids == 3, 10_000, ids)})
    with pytest.raises(ValueError, match="NaN"):
        model(**{**inputs, "pixel_values": np.full_like(inputs["pixel_values"], np.nan)})
    with pytest.raises(ValueError, match="capacity 10 is smaller"):
        model.prepare(**inputs, visual_capacity=10)
    text_only = model(input_ids=inputs["input_ids"][2:], attention_mask=inputs["attention_mask"][2:])
    assert np.isfinite(np.asarray(text_only)).all()


def test_fixed_capacities_compile_once_across_image_sizes(setup, monkeypatch):
    """Fixed text length, crop and visual capacities: one trace of the jitted prepare for every size."""
    from models import llava_next_model
    from models.llava_layout import max_crops_per_image, max_tokens_per_image
    from tests.models.padding import left_pad

    _, model, _ = setup
    config = model.vision_config
    capacity, crops = max_tokens_per_image(config), max_crops_per_image(config)
    proc = lt.processor()
    cases = []
    for i, name in enumerate(("tiny", "wide_2to1", "large", "tall_1to3")):
        inputs = _np(proc(images=[lt.random_image(*lt.IMAGE_SIZES[name], seed=i)], text=["w1 <image> w2"],
                          return_tensors="pt"))
        cases.append((name, inputs, np.asarray(model(**inputs))[0]))
    traces = []
    original = llava_next_model.place_visual
    monkeypatch.setattr(llava_next_model, "place_visual", lambda *a: traces.append(1) or original(*a))
    for name, inputs, alone in cases:
        p = model.prepare(**left_pad(inputs, capacity + 8, lt.PAD_ID), visual_capacity=capacity, crop_capacity=crops)
        logits = np.asarray(model.language_model(**_lm_args(p)))
        assert np.abs(logits[0, -len(alone):] - alone).max() <= TOL, name
        assert p.inputs_embeds.shape == (1, capacity + 8, lt.TEXT_HIDDEN) and p.visual.capacity == capacity
    assert len(traces) == 1, f"{len(traces)} traces for 4 image sizes"
    with pytest.raises(ValueError, match="crop_capacity 2 is smaller"):
        model.prepare(**inputs, crop_capacity=2)


def test_bfloat16_is_as_close_to_float32_as_hf_bfloat16(setup):
    """models.load(dtype="bfloat16"): bf16 params end to end, logits no further from HF float32 than
    twice HF's own bf16 error."""
    import copy

    hf, _, folder = setup
    model = models.load(folder, dtype="bfloat16")
    dtypes = {v.get_value().dtype for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert dtypes == {np.dtype("bfloat16")}
    batch = _batch("mixed")
    ref, _ = _hf_forward(hf, batch)
    hf16 = copy.deepcopy(hf).to(torch.bfloat16)
    with torch.no_grad():
        ref16 = hf16(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()})
    mask = batch["attention_mask"]
    hf_err = _max_err(ref16.logits.float().numpy(), ref, mask)
    ours = model(**_np(batch))
    assert ours.dtype == np.float32
    assert _max_err(ours, ref, mask) <= 2 * hf_err, (_max_err(ours, ref, mask), hf_err)


def test_converted_folder_gives_the_same_model(setup, tmp_path):
    from convert import convert_checkpoint

    _, model, folder = setup
    converted = models.load(convert_checkpoint(folder, tmp_path / "out", progress=False))
    assert isinstance(converted, LlavaNextModel) and converted.config == model.config
    inputs = _np(_batch("extremes"))
    np.testing.assert_array_equal(np.asarray(converted(**inputs)), np.asarray(model(**inputs)))


def test_mistral_text_model_matches_hf(tmp_path):
    """llava-v1.6-mistral: the same image side over a Mistral decoder."""
    hf = lt.hf_model(seed=4, text_overrides=dict(model_type="mistral", sliding_window=None))
    assert type(hf.model.language_model).__name__ == "MistralModel"
    hf.save_pretrained(tmp_path)
    model = models.load(tmp_path)
    assert model.config.model_type == "llava_next"
    batch = _batch("mixed")
    ref, _ = _hf_forward(hf, batch)
    err = _max_err(model(**_np(batch)), ref, batch["attention_mask"])
    assert err <= TOL, f"llava_next + mistral: max-abs logits error {err}"
