"""What the tests of the shipped tiny models share: visual tokens per image and the per-family model fixture."""

from __future__ import annotations

import pytest
import torch

from benchmarks.tiny_models.evaluate import load

VISUAL_TOKENS = {"llava_next": 336, "qwen2_vl": 64}  # one image, either dataset's geometry


def shipped_fixture(folders: dict):
    """A module-scoped fixture over `folders` ({family: folder}) giving (HF model, Processor, family)."""

    @pytest.fixture(scope="module", params=sorted(folders))
    def shipped(request):
        torch.set_num_threads(1)
        model, processor, family = load(folders[request.param])
        assert family == request.param
        return model, processor, family

    return shipped
