"""Tiny models of the four families, built once for all engine test modules."""

from __future__ import annotations

import pytest
import torch

from jax_pruning.engine import generate
from tests.engine import families as F
from tests.engine.families import NEW


@pytest.fixture
def unblocked_attention(monkeypatch):
    """The fused attention form even for long sequences on the CPU: XLA's cost analysis counts a
    while-loop body once, so the query-blocked form (a lax.map, same arithmetic) would be under-counted."""
    import models.attention

    monkeypatch.setattr(models.attention, "QUERY_BLOCK", 1 << 30)


@pytest.fixture(scope="package", params=F.FAMILIES)
def family_setup(request, tmp_path_factory):
    """(family, HF model, our model, a batch of 2 samples holding 2 and 1 images of different sizes,
    unpruned output)."""
    torch.set_num_threads(1)
    family = request.param
    hf, model = F.build(family, tmp_path_factory.mktemp(family))
    inputs = F.batch(family, **F.MULTI_IMAGE)
    unpruned = generate(model, inputs, None, NEW, eos_token_id=[])
    return family, hf, model, inputs, unpruned
