"""The memory planner (`jaxprune plan`, jax_pruning/plan.py): real-shape presets, abstract meshes, and its
predictions against what the embedded tiny models really allocate on the CPU."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import pytest
from flax import nnx

import jax_pruning as jp
from jax_pruning import presets
from jax_pruning.cli import main
from jax_pruning.plan import param_table, parse_memory, parse_mesh, plan_memory, weight_bytes
from models.config import load_config

GiB = 1 << 30
ASSETS = "jax_pruning/assets"

# Published sizes (Hugging Face model cards, parameters of the bf16 checkpoints).
PUBLISHED = {"llava-next-8b": 8.36e9, "qwen2-vl-7b": 8.29e9, "qwen2.5-vl-7b": 8.29e9, "qwen2.5-vl-72b": 73.4e9,
             "qwen3-vl-8b": 8.77e9}


@pytest.mark.parametrize("name", presets.names())
def test_preset_parameter_count_matches_the_published_size(name):
    count = weight_bytes(load_config(presets.config(name)), "data=1,model=1")["parameters"]
    assert abs(count / PUBLISHED[name] - 1) < 0.03, (name, count)


def test_presets_are_the_benchmarks_real_configs():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import shapes

    assert shapes.get("llava_next_8b").config == presets.config("llava-next-8b")
    assert shapes.get("qwen2_5_vl_7b").config == presets.config("qwen2.5-vl-7b")


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="known presets: llava-next-8b, qwen2-vl-7b"):
        plan_memory("llava-next-7b")


@pytest.mark.parametrize("folder", ["tiny_llava_next", "tiny_qwen2_vl"])
def test_param_table_equals_the_whole_abstract_model(folder):
    from models.params import abstract_model, flat_param_shapes

    config = load_config(f"{ASSETS}/{folder}")
    table = param_table(config, "float32")
    assert {k: shape for k, (shape, _) in table.items()} == flat_param_shapes(abstract_model(config))


def test_weights_per_device_on_abstract_meshes():
    config = load_config(presets.config("llava-next-8b"))
    w18 = weight_bytes(config, "data=1,model=8", "bfloat16")
    total = w18["total"]
    assert total == 2 * w18["parameters"]
    assert total / 8 <= w18["per_device"] <= total / 8 * 1.05  # split 8 ways + small replicated tensors
    w24 = weight_bytes(config, "data=2,model=4", "bfloat16")
    assert total / 4 <= w24["per_device"] <= total / 4 * 1.05  # replicated over data
    fsdp = weight_bytes(config, "data=2,model=4", "bfloat16", fsdp=True)
    assert total / 8 <= fsdp["per_device"] <= total / 8 * 1.05  # embed axes over data too
    # Qwen2.5-VL-7B: 28 query / 4 KV heads do not split 8 ways, so attention stays replicated on model=8
    qwen = weight_bytes(load_config(presets.config("qwen2.5-vl-7b")), "data=1,model=8")
    assert qwen["per_device"] > 1.5 * qwen["total"] / 8


def test_parsing():
    assert parse_memory("16GiB") == 16 * GiB
    assert parse_memory("80GB") == 80 * 10**9
    assert parse_memory("141 GiB") == 141 * GiB
    assert parse_memory(1024) == 1024
    for bad in ("16 gigs", "GiB", "-1GB", "0GiB"):
        with pytest.raises(ValueError, match="device memory"):
            parse_memory(bad)
    assert dict(parse_mesh("model=8").shape) == {"data": 1, "model": 8}
    assert dict(parse_mesh("data=2, model=4").shape) == {"data": 2, "model": 4}
    for bad in ("data=2,pipe=4", "data=two", "data=0", "data=2,data=2", "8"):
        with pytest.raises(ValueError, match="mesh"):
            parse_mesh(bad)


def test_llava_next_8b_plan_on_one_by_eight():
    p = plan_memory("llava-next-8b", mesh="data=1,model=8", batch_size=32, device_memory="16GiB",
                    pruner=jp.pruner("mr_pruner", keep_ratio=0.1))
    t = p.tokens
    # the MR-Pruner official budget int(0.1 * (576 + 48 * 49)) = 292, + 48 newlines + 60 text tokens
    assert (t.visual, t.keep, t.seen, t.length, t.length0) == (2928, 292, 400, 3072, 448)
    assert p.kv_cache == 32 * 2 * 32 * (448 + 16) * 1 * 128 * 2  # layers x k/v x b x slots x 8/8 heads x hd x bf16
    assert p.fits and p.total <= 16 * GiB
    big = plan_memory("llava-next-8b", mesh="data=1,model=8", batch_size=p.largest_batch, device_memory="16GiB",
                      pruner=jp.pruner("mr_pruner", keep_ratio=0.1))
    over = plan_memory("llava-next-8b", mesh="data=1,model=8", batch_size=p.largest_batch + 1,
                       device_memory="16GiB", pruner=jp.pruner("mr_pruner", keep_ratio=0.1))
    assert big.fits and not over.fits


# ---- predicted vs measured on the CPU: the embedded tiny models -------------------------------------------

def _capture(module_name: str, attribute: str, store: dict):
    module = importlib.import_module(module_name)
    original = getattr(module, attribute)

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        store.update(fn=original, args=args, kwargs=kwargs, out=out)
        return out

    return module, attribute, wrapper


@pytest.fixture(scope="module")
def tiny():
    import models
    from jax_pruning.bench import synthetic_batch
    from jax_pruning.processing import Processor

    cache = {}

    def get(folder):
        if folder not in cache:
            path = f"{ASSETS}/{folder}"
            model = models.load(path)
            cache[folder] = path, model, synthetic_batch(Processor.from_folder(path), 4, 64)
        return cache[folder]

    return get


CASES = [("tiny_llava_next", "mr_pruner"), ("tiny_llava_next", "hilo"), ("tiny_qwen2_vl", "none"),
         ("tiny_qwen2_vl", "fastv")]


@pytest.mark.parametrize("folder,method", CASES)
def test_tiny_model_predicted_vs_measured(tiny, monkeypatch, folder, method):
    """Weights and KV cache exactly; the prefill's and the vision stage's activations within 25% of XLA's
    memory analysis of the programs `jp.generate` ran (arguments + temporaries + outputs, minus the
    weights and the KV cache), with the planner's CPU attention model."""
    path, model, inputs = tiny(folder)
    prefill, vision = {}, {}
    monkeypatch.setattr(*_capture("jax_pruning.engine.generate", "prefill", prefill))
    family = "models.llava_next_model" if folder == "tiny_llava_next" else "models.qwen_vl_model"
    monkeypatch.setattr(*_capture(family, "_embed", vision))
    spec = None if method == "none" else jp.pruner(method, keep_ratio=0.25)
    out = jp.generate(model, inputs, spec, 4)

    ids = np.asarray(inputs["input_ids"])
    visual = int((ids == model.config.image_token_id).sum(axis=1).max())
    plan = plan_memory(path, batch_size=ids.shape[0], visual_tokens=visual, prompt_tokens=ids.shape[1] - visual,
                       new_tokens=4, pruner=spec, dtype="float32", attention="cpu")

    weights = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert plan.weights == plan.weights_total == weights
    assert plan.tokens.lengths == out.stats["sequence_slots"]
    caches = prefill["out"][1]
    kv = sum(c.k.nbytes + c.v.nbytes for segment in caches for c in segment.caches)
    assert plan.kv_cache == kv

    for stage, store in (("prefill", prefill), ("vision", vision)):
        state = sum(x.nbytes for x in jax.tree.leaves(nnx.state(store["args"][0])))  # the module's weights
        analysis = store["fn"].lower(*store["args"], **store["kwargs"]).compile().memory_analysis()
        outputs = sum(x.nbytes for x in jax.tree.leaves(store["out"]))
        measured = analysis.argument_size_in_bytes - state + analysis.temp_size_in_bytes + outputs
        if stage == "prefill":
            measured -= kv  # resident, planned apart
        predicted = sum(plan.stages[stage].values())
        assert 0.75 < predicted / measured < 1.25, (stage, predicted, measured, plan.stages[stage])


# ---- the command line ----------------------------------------------------------------------------------

def test_cli_plan_prints_the_verdict_and_the_largest_batch(capsys):
    rc = main(["plan", "--model", "llava-next-8b", "--mesh", "data=1,model=8", "--device-memory", "16GiB",
               "--batch-size", "32", "--method", "mr_pruner", "--keep", "0.1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "fits" in out.splitlines()[-2] and "largest batch that fits:" in out
    for row in ("weights", "KV cache", "activations", "total"):
        assert row in out

    rc = main(["plan", "--model", "llava-next-8b", "--mesh", "data=2,model=4", "--device-memory", "16GiB",
               "--batch-size", "32", "--method", "mr_pruner", "--keep", "0.1", "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0 and plan["mesh"] == {"data": 2, "model": 4} and plan["largest_batch"] % 2 == 0
    assert plan["total"] == plan["weights"] + plan["kv_cache"] * (plan["peak_stage"] in ("prefill", "decode")) \
        + plan["activations"]


@pytest.mark.parametrize("args,message", [
    (["--mesh", "data=2;model=4"], "mesh"),
    (["--mesh", "data=3,model=1"], "multiple of the data axis (3)"),
    (["--device-memory", "16 gigs"], "device memory"),
    (["--model", "gpt-5"], "known presets"),
    (["--method", "nope"], "nope"),
])
def test_cli_plan_bad_inputs_are_one_line_errors(capsys, args, message):
    base = {"--model": "llava-next-8b", "--mesh": "data=1,model=8", "--device-memory": "16GiB", "--batch-size": "32"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    rc = main(["plan", *[x for pair in base.items() for x in pair]])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("jaxprune plan: ") and message in err and err.count("\n") == 1, err
