"""Pruning methods by name: `pruner("mr_pruner", keep_ratio=0.1)` -> PrunerSpec.

The methods and their options come from each method module's declaration
(`jax_pruning.methods.declared()`); this module only validates and freezes them.

A PrunerSpec is a frozen, hashable description (name + every option with the
defaults filled in), so it can be a static argument of `jax.jit` and two specs
that mean the same thing compare equal. Validation happens here, once, with
errors that name the bad option and the allowed values; the method functions
themselves take the same option names as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping

from jax_pruning.methods import declared, lookup
from jax_pruning.methods.declaration import KEEP_RATIO, Method

METHODS: tuple[str, ...] = tuple(declared())


def default_options(name: str) -> dict[str, Any]:
    """The method's options and their defaults (keep_ratio excluded: it has no default)."""
    return {option: default for option, (default, _) in lookup(name).options.items()}


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
    def method(self) -> Method:
        """The method's declaration (stage, budget rule, selection, FLOPs)."""
        return lookup(self.name)

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
    schema = lookup(name).options
    valid = ("keep_ratio", *schema)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid)}"
        )
    if "keep_ratio" not in options:
        raise ValueError(f"{name}: option 'keep_ratio' is required (a number in (0, 1])")
    resolved = {"keep_ratio": KEEP_RATIO(name, "keep_ratio", options["keep_ratio"])}
    for option, (default, check) in schema.items():
        resolved[option] = check(name, option, options.get(option, default))
    return PrunerSpec(name=name, items=tuple(sorted(resolved.items())))
