"""A tiny random LLaVA-NeXT checkpoint folder with its processor files (a complete HF folder)."""

from __future__ import annotations

from pathlib import Path


def llava_folder(folder: Path) -> Path:
    from tests.engine import families as F
    from tests.models import llava_tiny as lt

    F.build("llava_next", folder)
    lt.processor().save_pretrained(folder)
    return folder
