"""Key-map rules: how one HF tensor name becomes one Flax param path.

A table is an ordered list of `Rule`s; the first rule whose regex matches the
*whole* HF key wins. Targets are '/'-joined nnx state paths (see
notes/contracts_models.md), formatted with the regex's named groups. The
transform says how the tensor's axes move (PyTorch [out, in] -> Flax [in, out]).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transform:
    """An axis permutation (None = keep), applied together with the dtype cast."""

    name: str
    axes: tuple[int, ...] | None

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        if self.axes is None:
            return tuple(shape)
        if len(shape) != len(self.axes):
            raise ValueError(f"transform {self.name!r} needs a {len(self.axes)}-D tensor, got shape {tuple(shape)}")
        return tuple(shape[a] for a in self.axes)

    def apply(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """One copy at most: cast and permute in a single pass (no float64 detours)."""
        view = x if self.axes is None else x.transpose(self.axes)
        if view is x and x.dtype == dtype:
            return x
        out = np.empty(view.shape, dtype=dtype)
        np.copyto(out, view, casting="unsafe")
        return out


TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, axes: tuple[int, ...] | None) -> Transform:
    """Add a named transform (vision tables may need more than the defaults)."""
    if name in TRANSFORMS and TRANSFORMS[name].axes != axes:
        raise ValueError(f"transform {name!r} already registered with axes {TRANSFORMS[name].axes}")
    TRANSFORMS[name] = Transform(name, axes)
    return TRANSFORMS[name]


register_transform("none", None)
register_transform("linear", (1, 0))  # torch Linear [out, in] -> Flax Dense kernel [in, out]
register_transform("conv2d", (2, 3, 1, 0))  # [O, I, H, W] -> [H, W, I, O]
register_transform("conv3d", (2, 3, 4, 1, 0))  # [O, I, T, H, W] -> [T, H, W, I, O]


@dataclasses.dataclass(frozen=True)
class Rule:
    """`pattern` (regex on the full HF key, named groups) -> `target` template.

    target=None drops the tensor on purpose (e.g. stale rotary buffers).
    optional=True drops it silently when the model has no such param (e.g.
    `lm_head.weight` saved next to tied embeddings), instead of calling it
    unexpected.
    """

    pattern: str
    target: str | None
    transform: str = "none"
    optional: bool = False

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"rule {self.pattern!r}: unknown transform {self.transform!r}; known: {sorted(TRANSFORMS)}")
        re.compile(self.pattern)


@dataclasses.dataclass(frozen=True)
class Match:
    rule: Rule
    target: str | None

    @property
    def transform(self) -> Transform:
        return TRANSFORMS[self.rule.transform]


class KeyMap:
    """A compiled table; `match(key)` returns the first matching rule or None."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = tuple(rules)
        self._compiled = [(re.compile(r.pattern), r) for r in self.rules]

    def match(self, key: str) -> Match | None:
        for regex, rule in self._compiled:
            m = regex.fullmatch(key)
            if m is not None:
                target = None if rule.target is None else rule.target.format(**m.groupdict())
                return Match(rule, target)
        return None


def prefixed(
    body: Sequence[tuple[str, str, str]], hf_prefixes: Sequence[str], target_prefix: str, optional: bool = False
) -> list[Rule]:
    """Expand (hf_suffix_regex, target_suffix, transform) entries under every HF prefix.

    `hf_prefixes` are literal strings ("model.", "language_model.model."), so
    one body table serves the Hub's on-disk names and transformers-5 names.
    """
    return [
        Rule(re.escape(prefix) + suffix, target_prefix + target, transform, optional)
        for prefix in hf_prefixes
        for suffix, target, transform in body
    ]


LAYER = r"layers\.(?P<layer>\d+)\."  # HF "layers.<i>." -> nnx "layers/{layer}/"
