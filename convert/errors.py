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
    (param path -> (HF key, converted shape, expected shape)), `mistyped` (param path -> (HF key,
    dtype name): a non-floating tensor where the model needs floating-point weights).
    """

    def __init__(
        self,
        source: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Mapping[str, tuple[str, tuple, tuple]] | None = None,
        mistyped: Mapping[str, tuple[str, str]] | None = None,
        files: Mapping[str, str] | None = None,
    ):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = dict(sorted((mismatched or {}).items()))
        self.mistyped = dict(sorted((mistyped or {}).items()))
        self.files = dict(files or {})  # HF key -> the safetensors file it is in (named in the message)
        super().__init__(self._message())

    def _where(self, key: str) -> str:
        return f"{key} in {self.files[key]}" if key in self.files else key

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
                f"    {p} <- {self._where(key)}: {tuple(got)} != {tuple(want)}"
                for p, (key, got, want) in self.mismatched.items()
            ]
        if self.mistyped:
            lines.append(f"  wrong dtype ({len(self.mistyped)}): param <- HF key: dtype (the model needs floating-point "
                         f"weights; was an integer tensor saved in its place?)")
            lines += [f"    {p} <- {self._where(key)}: {dtype}" for p, (key, dtype) in self.mistyped.items()]
        lines.append("  check that config.json describes these weights (model_type, sizes) and that every "
                     "safetensors file is complete")
        return "\n".join(lines)
