"""HF safetensors -> Flax params -> Orbax checkpoint.

    python -m convert HF_DIR OUT_DIR [--dtype float32|bfloat16]
    convert_checkpoint(hf_dir, out_dir, dtype="float32")
"""

from convert.cli import main
from convert.errors import ConversionError
from convert.pipeline import convert_checkpoint, load_hf_params

__all__ = ["ConversionError", "convert_checkpoint", "load_hf_params", "main"]
