"""PyramidDrop (CVPR 2025): drop visual tokens in stages as the LLM gets deeper.

Why: FastV drops once; PyramidDrop observes that the LLM needs fewer visual
tokens the deeper it is, so it drops a share at the end of each of several
stages, each time ranking the survivors afresh.

Read from the official code (github.com/Cooperx521/PyramidDrop, commit
6444f30, llava/model/modeling_llama_pdrop.py `LlamaModel.forward` and
`pdrop_rank_drop`; defaults from scripts/v1_5/pdrop_eval/*.sh):
- Stages end at `layer_list` = [8, 16, 24] of the 32-layer LLM. After layer
  l - 1 has run, layer l's input norm and q/k projections (with RoPE) give the
  last instruction token's query (the last prompt token at inference) and every
  key; its causal softmax row, averaged over heads, ranks the visual tokens
  still present; the top ones survive and layer l runs on text + them. This is
  FastV's score at layer l (`fastv.scores`), once per stage.
- The count after stage s is int(n_image x ratio_s) of the image's original
  tokens, with `image_token_ratio_list` = [0.5, 0.25, 0.125] (lambda = 0.5).

Here:
- `layers`: the stage ends (default (): a quarter, half and three quarters of
  the depth, [8, 16, 24] at 32 layers; on shallow models the distinct ones >= 1).
- Budget: `keep_ratio` is what the last layers see (like every method); stage s
  of S keeps floor(keep_ratio^(s/S) x real tokens), a geometric schedule, so
  keep_ratio = 0.125 over three stages is the official 0.5 / 0.25 / 0.125.
- Differences: kept tokens keep their original position ids (the official code
  renumbers the survivors contiguously); ties go to the lower index (official:
  torch.topk); LLaVA-NeXT newlines are kept and not counted (the project's rule).
With one stage it is FastV at that layer, token for token.
"""

from __future__ import annotations

import numpy as np

from jax_pruning.methods import declaration, fastv


def default_layers(n_layers: int) -> tuple[int, ...]:
    """The official stage ends as fractions of the depth: n/4, n/2, 3n/4 (distinct, >= 1, < n)."""
    return tuple(sorted({max(1, n_layers * q // 4) for q in (1, 2, 3)} - {n_layers}))


def _layers(spec, n_layers: int) -> tuple[int, ...]:
    return spec.layers or default_layers(n_layers)


def stage_fractions(keep_ratio: float, stages: int) -> list[float]:
    """keep_ratio^(s/S), s = 1..S: the share of the original visual tokens left after each stage."""
    return [keep_ratio ** (s / stages) for s in range(1, stages + 1)]


def _stage_keep(spec, real: np.ndarray, n_stages: int) -> np.ndarray:
    """[B, S] tokens after each stage; the last is floor(keep_ratio x real) exactly (every method's
    budget), the earlier ones tolerate the float error of the fractional powers (1e-9)."""
    real = np.asarray(real, np.float64)
    fractions = stage_fractions(float(spec.keep_ratio), n_stages)
    keeps = [np.floor(f * real + 1e-9) for f in fractions[:-1]] + [np.floor(float(spec.keep_ratio) * real)]
    return np.stack(keeps, axis=1).astype(np.int64)


def _flops(spec, n, width, text, tokens):
    """One FastV score row per stage, over at most every prompt token (an upper bound)."""
    stages = max(len(spec.layers), 1) if spec.layers else 3
    return stages * fastv.score_flops(text, tokens)


METHOD = declaration.Method(
    name="pyramiddrop",
    stage=declaration.AT_LLM_LAYER,
    options={"layers": ((), declaration.layer_list)},
    layer_option="layers",
    layers=_layers,
    stage_keep=_stage_keep,
    llm_select=fastv.llm_select,
    flops=_flops,
)
