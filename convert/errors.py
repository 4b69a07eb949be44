"""Errors raised by the converter.

One exception type for "this checkpoint does not fit this model", carrying every
problem at once: fixing keys one error at a time is slow on large checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ConversionError(ValueError):
    """The checkpoint's tensors do not match the model's parameter tree.

    Attributes list *all* problems: `missing` (model params no tensor maps to),
    `unexpected` (HF keys with no rule or no matching param), `mismatched`
    (param path -> (HF key, converted shape, expected shape)).
    """

    def __init__(
        self,
        source: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Mapping[str, tuple[str, tuple, tuple]] | None = None,
    ):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = dict(sorted((mismatched or {}).items()))
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"checkpoint {self.source} does not match the model's parameters:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): model parameters with no tensor in the checkpoint")
            lines += [f"    {p}" for p in self.missing]
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): checkpoint tensors the model has no place for")
            lines += [f"    {k}" for k in self.unexpected]
        if self.mismatched:
            lines.append(f"  mis-shaped ({len(self.mismatched)}): param <- HF key: converted shape != expected")
            lines += [
                f"    {p} <- {key}: {tuple(got)} != {tuple(want)}"
                for p, (key, got, want) in self.mismatched.items()
            ]
        return "\n".join(lines)
