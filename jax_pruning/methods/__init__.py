"""The pruning methods, one module each; `declared()` finds them by their `METHOD` declaration.

A module here that ends with `METHOD = declaration.Method(...)` is a method: the
registry (`jax_pruning.pruner`), the engine, the FLOP count and the benchmarks
pick it up without any other edit. Methods are listed in alphabetical order.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from jax_pruning.methods.declaration import Method


@functools.cache
def declared() -> dict[str, Method]:
    """{name: Method} of every method module in this package, sorted by name."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        method = getattr(module, "METHOD", None)
        if isinstance(method, Method):
            if method.name in found:
                raise RuntimeError(f"two pruning methods are named {method.name!r}")
            found[method.name] = method
    return dict(sorted(found.items()))


def lookup(name: str) -> Method:
    """The declaration of method `name` (ValueError listing the methods when unknown)."""
    methods = declared()
    if not isinstance(name, str) or name not in methods:
        raise ValueError(f"unknown pruning method {name!r}; valid methods: {', '.join(methods)}")
    return methods[name]
