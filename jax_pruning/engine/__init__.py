"""Pruned inference: bucketed staging, pre-LLM selection, pruned prefill, greedy decoding, FLOPs."""

from jax_pruning.engine.generate import (ABSORBED, CANDIDATE, DROPPED, KEPT, MERGED, GenerateOutput, compile_count,
                                         generate)

__all__ = ["ABSORBED", "CANDIDATE", "DROPPED", "KEPT", "MERGED", "GenerateOutput", "compile_count", "generate"]
