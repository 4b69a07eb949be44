"""NumPy references of the pruning methods, written straight from METHODS.md (no JAX)."""
