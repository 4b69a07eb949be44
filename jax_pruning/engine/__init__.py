"""Pruned inference: bucketed staging, pre-LLM selection, pruned prefill, greedy decoding, FLOPs."""

from jax_pruning.engine.generate import CANDIDATE, DROPPED, KEPT, GenerateOutput, compile_count, generate

__all__ = ["CANDIDATE", "DROPPED", "KEPT", "GenerateOutput", "compile_count", "generate"]
