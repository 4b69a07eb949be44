"""Pruning methods by name: `pruner("mr_pruner", keep_ratio=0.1)` -> PrunerSpec.

A PrunerSpec is a frozen, hashable description (name + every option with the
defaults filled in), so it can be a static argument of `jax.jit` and two specs
that mean the same thing compare equal. Validation happens here, once, with
errors that name the bad option and the allowed values; the method functions
themselves take the same option names as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
from typing import Any, Callable, Mapping

# --- option checkers: each returns the normalised value or raises ValueError --------------


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _real(allowed: str, ok: Callable[[float], bool]) -> Callable[[str, str, Any], float]:
    """A finite real number (not a bool) satisfying `ok`; stored as a Python float."""

    def check(method: str, option: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value) or not ok(value):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {value!r}")
        return value

    return check


def _integer(allowed: str, minimum: int) -> Callable[[str, str, Any], int]:
    """An integer (not a bool, not a float) >= minimum; stored as a Python int."""

    def check(method: str, option: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {_describe(value)}")
        value = int(value)
        if value < minimum:
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {value!r}")
        return value

    return check


def _flag(method: str, option: str, value: Any) -> bool:
    # numpy bools are accepted; ints are not (True/1 confusion hides typos in configs).
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"{method}: option {option!r} must be True or False, got {_describe(value)}")
    return bool(value)


def _choice(*choices: str) -> Callable[[str, str, Any], str]:
    def check(method: str, option: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"{method}: option {option!r} must be one of {', '.join(map(repr, choices))}, "
                f"got {_describe(value)}"
            )
        return value

    return check


_KEEP_RATIO = _real("a number in (0, 1]", lambda v: 0.0 < v <= 1.0)
_COSINE_THRESHOLD = _real("a number in [-1, 1] (a cosine similarity)", lambda v: -1.0 <= v <= 1.0)
_POSITIVE = _real("a number > 0", lambda v: v > 0.0)
_NON_NEGATIVE = _real("a number >= 0", lambda v: v >= 0.0)

# method -> option -> (default, checker). `keep_ratio` is common and required.
_SCHEMA: dict[str, dict[str, tuple[Any, Callable[[str, str, Any], Any]]]] = {
    "mr_pruner": {
        "variant": ("official", _choice("official", "paper")),
        "threshold": (0.5, _COSINE_THRESHOLD),
        "cross_threshold": (0.5, _COSINE_THRESHOLD),
        "temperature": (0.03, _POSITIVE),
        "alpha": (0.3, _NON_NEGATIVE),
        "beta": (0.5, _NON_NEGATIVE),
        "intra": (True, _flag),
        "cross": (True, _flag),
        "informativeness": (True, _flag),
    },
    "hilo": {
        "candidate_ratio": (1.0, _NON_NEGATIVE),
        "window": (2, _integer("an integer >= 1", 1)),
        "removal_layer": (2, _integer("an integer >= 0", 0)),
        "bias": (0.0, _NON_NEGATIVE),
        "threshold": (0.5, _COSINE_THRESHOLD),
        "coarse": (True, _flag),
        "candidates": (True, _flag),
        "merge": (True, _flag),
    },
    "fastv": {
        "layer": (2, _integer("an integer >= 0", 0)),
    },
    "gprune": {
        "threshold": (0.5, _COSINE_THRESHOLD),
        "temperature": (0.03, _POSITIVE),
        "steps": (5, _integer("an integer >= 1", 1)),
    },
    "tome": {},
    "random": {
        "seed": (0, _integer("an integer >= 0", 0)),
    },
}

METHODS: tuple[str, ...] = tuple(_SCHEMA)


def default_options(name: str) -> dict[str, Any]:
    """The method's options and their defaults (keep_ratio excluded: it has no default)."""
    _check_name(name)
    return {option: default for option, (default, _) in _SCHEMA[name].items()}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or name not in _SCHEMA:
        raise ValueError(f"unknown pruning method {name!r}; valid methods: {', '.join(METHODS)}")


@dataclasses.dataclass(frozen=True)
class PrunerSpec:
    """A validated pruning method: `name` plus all options as sorted (key, value) pairs.

    Hashable and comparable, so it can be a static jit argument. Options read as
    attributes (`spec.keep_ratio`) or as a read-only mapping (`spec.options`).
    Build it with `pruner(...)`, which validates; the constructor does not.
    """

    name: str
    items: tuple[tuple[str, Any], ...]

    @property
    def options(self) -> Mapping[str, Any]:
        return types.MappingProxyType(dict(self.items))

    def __getattr__(self, option: str) -> Any:
        # Only called when normal lookup fails; private names never map to options
        # (keeps copy/pickle, which probe dunders before `items` exists, working).
        if option.startswith("_"):
            raise AttributeError(option)
        for key, value in self.__dict__.get("items", ()):
            if key == option:
                return value
        raise AttributeError(f"pruner {self.__dict__.get('name')!r} has no option {option!r}")

    def replace(self, **changes: Any) -> "PrunerSpec":
        """A new, re-validated spec with some options changed."""
        return pruner(self.name, **{**dict(self.items), **changes})

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.items)
        return f"pruner({self.name!r}, {options})"


def pruner(name: str, **options: Any) -> PrunerSpec:
    """Validate `options` for method `name` and return its PrunerSpec (defaults filled in).

    Raises ValueError for an unknown method, an unknown option (listing the valid
    ones), a missing or out-of-range keep_ratio, or a bad option value.
    """
    _check_name(name)
    schema = _SCHEMA[name]
    valid = ("keep_ratio", *schema)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid)}"
        )
    if "keep_ratio" not in options:
        raise ValueError(f"{name}: option 'keep_ratio' is required (a number in (0, 1])")
    resolved = {"keep_ratio": _KEEP_RATIO(name, "keep_ratio", options["keep_ratio"])}
    for option, (default, check) in schema.items():
        resolved[option] = check(name, option, options.get(option, default))
    return PrunerSpec(name=name, items=tuple(sorted(resolved.items())))
