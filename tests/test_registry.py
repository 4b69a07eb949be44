"""The method registry: names, option defaults, validation, hashability."""

import copy
import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_pruning as jp
from jax_pruning.registry import default_options

CONTRACT_DEFAULTS = {
    "mr_pruner": dict(variant="official", threshold=0.5, cross_threshold=0.5, temperature=0.03,
                      alpha=0.3, beta=0.5, intra=True, cross=True, informativeness=True),
    "hilo": dict(candidate_ratio=1.0, window=2, temporal_window=2, removal_layer=2, bias=0.0, threshold=0.5,
                 coarse=True, candidates=True, merge=True),
    "fastv": dict(layer=2),
    "gprune": dict(threshold=0.5, temperature=0.03, steps=5),
    "tome": dict(),
    "random": dict(seed=0),
}


def test_methods_are_the_public_names():
    """Every method module's declaration is registered, in alphabetical order."""
    assert set(CONTRACT_DEFAULTS) <= set(jp.METHODS)
    assert list(jp.METHODS) == sorted(jp.METHODS)


@pytest.mark.parametrize("name", list(CONTRACT_DEFAULTS))
def test_defaults_are_filled_in(name):
    spec = jp.pruner(name, keep_ratio=0.25)
    assert spec.name == name
    assert dict(spec.options) == {"keep_ratio": 0.25, **CONTRACT_DEFAULTS[name]}
    assert default_options(name) == CONTRACT_DEFAULTS[name]
    for key, value in CONTRACT_DEFAULTS[name].items():
        assert getattr(spec, key) == value
    assert [key for key, _ in spec.items] == sorted(spec.options)


def test_spec_is_hashable_equal_and_static_for_jit():
    a = jp.pruner("mr_pruner", keep_ratio=0.1)
    b = jp.pruner("mr_pruner", variant="official", keep_ratio=0.1, beta=0.5)
    c = jp.pruner("mr_pruner", keep_ratio=0.1, variant="paper")
    assert a == b and hash(a) == hash(b) and a != c
    assert jp.pruner("fastv", keep_ratio=1) == jp.pruner("fastv", keep_ratio=1.0)
    assert isinstance(jp.pruner("fastv", keep_ratio=1).keep_ratio, float)
    assert jp.pruner("random", keep_ratio=0.5, seed=np.int64(3)).seed == 3
    traces = []

    def f(x, spec):
        traces.append(spec)
        return x * spec.keep_ratio

    jf = jax.jit(f, static_argnums=1)
    assert float(jf(jnp.float32(2.0), a)) == pytest.approx(0.2)
    jf(jnp.float32(3.0), b)  # equal spec -> no retrace
    assert len(traces) == 1
    assert pickle.loads(pickle.dumps(a)) == a and copy.deepcopy(a) == a


def test_spec_is_read_only_and_readable():
    spec = jp.pruner("gprune", keep_ratio=0.3, steps=3)
    with pytest.raises(Exception):
        spec.name = "tome"
    with pytest.raises(TypeError):
        spec.options["steps"] = 4
    with pytest.raises(AttributeError, match="no option 'nope'"):
        spec.nope
    assert repr(spec) == "pruner('gprune', keep_ratio=0.3, steps=3, temperature=0.03, threshold=0.5)"
    assert spec.replace(steps=2).steps == 2
    with pytest.raises(ValueError, match="steps"):
        spec.replace(steps=0)


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="valid methods: " + ", ".join(sorted(jp.METHODS))):
        jp.pruner("mrpruner", keep_ratio=0.1)
    with pytest.raises(ValueError, match="unknown pruning method"):
        jp.pruner(None, keep_ratio=0.1)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"'layers'.*valid options: keep_ratio, layer"):
        jp.pruner("fastv", keep_ratio=0.1, layers=2)
    with pytest.raises(ValueError, match="valid options: keep_ratio$"):
        jp.pruner("tome", keep_ratio=0.1, seed=1)


@pytest.mark.parametrize("ratio", [None, 0, 0.0, -0.1, 1.0001, 2, math.nan, math.inf, True, "0.1",
                                   np.float32("nan"), [0.1]])
def test_bad_keep_ratio(ratio):
    options = {} if ratio is None else {"keep_ratio": ratio}
    with pytest.raises(ValueError, match="keep_ratio"):
        jp.pruner("tome", **options)


@pytest.mark.parametrize("ratio", [1e-9, 0.1, 1, 1.0, np.float64(0.5)])
def test_good_keep_ratio(ratio):
    assert jp.pruner("random", keep_ratio=ratio).keep_ratio == float(ratio)


@pytest.mark.parametrize(
    "name, option, value, allowed",
    [
        ("fastv", "layer", -1, "integer >= 0"),
        ("fastv", "layer", True, "integer >= 0"),
        ("fastv", "layer", 2.0, "integer >= 0"),
        ("hilo", "removal_layer", -2, "integer >= 0"),
        ("hilo", "window", 0, "integer >= 1"),
        ("hilo", "window", False, "integer >= 1"),
        ("hilo", "candidate_ratio", -0.5, ">= 0"),
        ("hilo", "bias", -1.0, ">= 0"),
        ("hilo", "merge", 1, "True or False"),
        ("hilo", "threshold", 1.5, r"\[-1, 1\]"),
        ("mr_pruner", "variant", "fast", "'official', 'paper'"),
        ("mr_pruner", "variant", None, "'official', 'paper'"),
        ("mr_pruner", "temperature", 0.0, "> 0"),
        ("mr_pruner", "alpha", math.nan, ">= 0"),
        ("mr_pruner", "intra", "yes", "True or False"),
        ("gprune", "steps", 0, "integer >= 1"),
        ("gprune", "steps", 5.5, "integer >= 1"),
        ("random", "seed", -1, "integer >= 0"),
        ("random", "seed", "0", "integer >= 0"),
    ],
)
def test_bad_option_values_name_option_and_allowed(name, option, value, allowed):
    with pytest.raises(ValueError, match=rf"{name}: option '{option}' must be .*{allowed}"):
        jp.pruner(name, keep_ratio=0.5, **{option: value})
