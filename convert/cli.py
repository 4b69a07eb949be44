"""`python -m convert HF_DIR OUT_DIR [--dtype ...]` (also `jaxprune convert`)."""

from __future__ import annotations

import argparse
import sys

from convert.pipeline import DTYPE_NAMES, convert_checkpoint


def build_parser(prog: str = "python -m convert") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Convert a Hugging Face safetensors checkpoint folder to a Flax/Orbax folder."
    )
    parser.add_argument("hf_dir", help="folder with config.json and model.safetensors (or a sharded index)")
    parser.add_argument("out_dir", help="output folder; written atomically (nothing appears there on failure)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES[:2], default="float32", help="dtype of the saved params")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m convert") -> int:
    """Run the converter; returns a process exit code (0 ok, 2 bad input, as `jaxprune convert`).

    Bad input (a damaged or mismatched checkpoint, a missing folder, an existing OUT_DIR) is one
    message on stderr naming the file, never a traceback."""
    args = build_parser(prog).parse_args(argv)
    try:
        out = convert_checkpoint(
            args.hf_dir, args.out_dir, args.dtype, overwrite=args.overwrite, progress=not args.quiet
        )
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
            IsADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
