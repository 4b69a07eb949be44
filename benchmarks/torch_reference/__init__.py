"""PyTorch transliterations of the methods' public code, used only by benchmarks/ops.py.

Written for this project from reading the public code (nothing copied); each
module names the source it follows. They take the same inputs the original
code sees, so the benchmark times what the original would do on CPU.
"""
