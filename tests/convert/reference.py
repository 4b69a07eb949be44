"""Independent reference for the text-model param tree (straight from the contract table).

HF name -> Flax path: drop "model.", dots become slashes; a Linear `weight`
becomes a transposed `kernel`, a norm `weight` a `scale`, the embedding
`embedding`; biases stay. Written without the converter's regexes on purpose.
"""

from __future__ import annotations

import numpy as np


def reference_text_params(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        parts = key.removeprefix("model.").split(".")
        stem, leaf = "/".join(parts[:-1]), parts[-1]
        if stem == "embed_tokens":
            out["embed_tokens/embedding"] = value
        elif leaf == "bias":
            out[f"{stem}/bias"] = value
        elif parts[-2].endswith("norm"):
            out[f"{stem}/scale"] = value
        else:
            out[f"{stem}/kernel"] = value.T
    return out


def assert_same_params(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same paths, shapes, dtypes and bit-identical values."""
    assert sorted(got) == sorted(want)
    for path, value in want.items():
        assert got[path].shape == value.shape, path
        assert got[path].dtype == value.dtype, (path, got[path].dtype, value.dtype)
        width = value.dtype.itemsize
        as_bits = np.dtype(f"u{width}")
        np.testing.assert_array_equal(
            np.ascontiguousarray(got[path]).view(as_bits), np.ascontiguousarray(value).view(as_bits), err_msg=path
        )
