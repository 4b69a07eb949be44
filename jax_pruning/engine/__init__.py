"""Pruned inference: bucketed staging, pre-LLM selection, pruned prefill, greedy decoding, FLOPs."""

from jax_pruning.engine.generate import GenerateOutput, compile_count, generate

__all__ = ["GenerateOutput", "compile_count", "generate"]
