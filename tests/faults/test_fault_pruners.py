"""Fault injection for `jp.pruner`: every method x every declared option x values of every type and range.

Outcome classes: (b) accepted -> a PrunerSpec whose option holds the value, normalised to the option's type;
(a) refused -> a ValueError whose message names the method and the option. Nothing else escapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jax_pruning as jp
from jax_pruning.registry import METHODS, PrunerSpec, default_options

PAIRS = [(method, option) for method in METHODS for option in default_options(method)]

# values of every type and range: None, strings, negatives, 0, huge, floats for ints, bools for floats, NaN, inf, lists
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2, 0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 1e308, -1e308, 2**63, float("nan"),
                     float("inf"), float("-inf"), "", "0.5", "official", "paper", "True", "nan"]),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.tuples(st.floats(0, 1)),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([np.float32(0.5), np.int64(3), np.bool_(True), np.float64("nan"), np.array([0.5]), b"0.5",
                     complex(0.5, 0), object()]),
)


def _check_outcome(method, option, value):
    try:
        spec = jp.pruner(method, keep_ratio=0.5, **{option: value})
    except ValueError as err:
        message = str(err)
        assert method in message and repr(option) in message, message
        return
    assert isinstance(spec, PrunerSpec) and spec.name == method
    stored = spec.options[option]
    default = default_options(method)[option]
    assert type(stored) is type(default), (option, value, stored)  # normalised to the option's type
    if isinstance(stored, float):
        assert math.isfinite(stored) and stored == float(value)
    elif isinstance(stored, (bool, int, str)):
        assert stored == value
    hash(spec)  # usable as a static jit argument


@settings(max_examples=300, deadline=None)
@given(pair=st.sampled_from(PAIRS), value=ANY_VALUE)
def test_any_option_value_is_accepted_or_named(pair, value):
    _check_outcome(*pair, value)


@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(METHODS), value=ANY_VALUE)
def test_any_keep_ratio_is_accepted_in_range_or_named(method, value):
    try:
        spec = jp.pruner(method, keep_ratio=value)
    except ValueError as err:
        assert method in str(err) and "'keep_ratio'" in str(err), str(err)
        return
    assert isinstance(spec.keep_ratio, float) and 0.0 < spec.keep_ratio <= 1.0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("keep_ratio", [0, 0.0, -0.0, -0.5, 1.0000001, 2, float("nan"), float("inf"), -float("inf"),
                                        True, None, "0.5", [0.5]])
def test_keep_ratio_outside_the_open_closed_unit_interval_is_refused(method, keep_ratio):
    with pytest.raises(ValueError, match=rf"{method}: option 'keep_ratio' must be a number in \(0, 1\]"):
        jp.pruner(method, keep_ratio=keep_ratio)


@pytest.mark.parametrize("method", METHODS)
def test_keep_ratio_edges_and_missing(method):
    assert jp.pruner(method, keep_ratio=1).keep_ratio == 1.0
    assert jp.pruner(method, keep_ratio=5e-324).keep_ratio == 5e-324  # smallest positive float is in (0, 1]
    with pytest.raises(ValueError, match=f"{method}: option 'keep_ratio' is required"):
        jp.pruner(method)


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(METHODS), name=st.text(min_size=1, max_size=12).filter(str.isidentifier))
def test_unknown_option_names_are_listed(method, name):
    if name == "keep_ratio" or name in default_options(method):
        return
    with pytest.raises(ValueError, match="unknown option") as info:
        jp.pruner(method, keep_ratio=0.5, **{name: 1})
    assert repr(name) in str(info.value) and "valid options: keep_ratio" in str(info.value)


@pytest.mark.parametrize("method", METHODS)
def test_option_of_another_method_is_unknown(method):
    foreign = {o for m in METHODS if m != method for o in default_options(m)} - set(default_options(method))
    for option in sorted(foreign):
        with pytest.raises(ValueError, match=rf"{method}: unknown option\(s\) '{option}'"):
            jp.pruner(method, keep_ratio=0.5, **{option: default_options_of_any(option)})


def default_options_of_any(option):
    return next(default_options(m)[option] for m in METHODS if option in default_options(m))


@pytest.mark.parametrize("name", ["", "MR_PRUNER", "mr-pruner", " fastv", "fastv ", "none", None, 3, ["fastv"], b"fastv"])
def test_unknown_method_names_are_refused_with_the_list(name):
    with pytest.raises(ValueError, match="unknown pruning method .*valid methods: .*mr_pruner"):
        jp.pruner(name, keep_ratio=0.5)


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(PAIRS), value=ANY_VALUE)
def test_replace_validates_like_pruner(pair, value):
    method, option = pair
    spec = jp.pruner(method, keep_ratio=0.5)
    try:
        new = spec.replace(**{option: value})
    except ValueError as err:
        assert repr(option) in str(err)
        return
    assert new == jp.pruner(method, keep_ratio=0.5, **{option: value})
