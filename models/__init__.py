"""Flax ports of LLaVA-NeXT and Qwen2-VL / Qwen2.5-VL / Qwen3-VL, equal to HF transformers.

    import models
    model = models.load(path, dtype=None)   # HF folder or converted folder
    model.config                            # parsed, frozen dataclass

Imports stay lazy: `import models` pulls in neither jax nor the converter, and
submodules (models.clip, models.qwen_vision, ...) import on their own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "load_config"]


def load(path, dtype: Any = None, *, mesh=None, fsdp: bool = False):
    """See models.loading.load."""
    from models.loading import load as _load

    return _load(path, dtype, mesh=mesh, fsdp=fsdp)


def __getattr__(name: str):
    # Re-export the config API lazily (models/config.py is the config owner's file).
    if name in ("load_config", "ModelConfig", "TextConfig"):
        from models import config

        return getattr(config, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
