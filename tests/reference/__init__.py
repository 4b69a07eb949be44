"""NumPy references of the pruning methods, written straight from the methods' specs (no JAX)."""
