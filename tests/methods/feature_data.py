"""Synthetic visual-token features for the graph-method tests.

Clustered features put within-cluster cosines well above the 0.5 threshold
(about 0.73) and across-cluster cosines near 0, so the graphs have real edges
and no similarity sits near the threshold (JAX and NumPy then build the same
graph bit for bit); per-token scales vary the informativeness.
"""

import numpy as np


def clustered(rng: np.random.Generator, n: int, d: int, centers: np.ndarray, spread: float = 0.6) -> np.ndarray:
    """[n, d] float32: random cluster center + noise of relative norm `spread`, random scale."""
    x = centers[rng.integers(0, len(centers), n)] + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    return (x * rng.uniform(0.5, 3.0, (n, 1))).astype(np.float32)


def centers(rng: np.random.Generator, count: int, d: int) -> np.ndarray:
    """Unit-norm-ish random cluster centers (nearly orthogonal for large d)."""
    return rng.normal(size=(count, d)) / np.sqrt(d)


def pad_rows(x: np.ndarray, valid: np.ndarray, rng: np.random.Generator, junk=np.nan) -> np.ndarray:
    """Scatter the rows of x into a longer array at the True slots of `valid`; the rest hold junk."""
    out = np.full((valid.size,) + x.shape[1:], junk, np.float32)
    if junk is None:
        out = rng.normal(size=out.shape).astype(np.float32) * 10
    out[valid] = x
    return out


def random_valid(rng: np.random.Generator, n_real: int, capacity: int) -> np.ndarray:
    """A validity mask of length `capacity` with n_real True at random positions."""
    valid = np.zeros(capacity, bool)
    valid[rng.choice(capacity, n_real, replace=False)] = True
    return valid
