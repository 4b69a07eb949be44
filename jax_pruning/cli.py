"""The `jaxprune` command line: convert, generate, eval, bench, demo."""

from __future__ import annotations

import argparse
import sys


def _not_yet(name: str):
    def run(args: argparse.Namespace) -> int:
        print(f"jaxprune {name}: not available yet (this subcommand arrives with the "
              f"inference engine and evaluation harness).")
        return 0
    return run


def _convert(args: argparse.Namespace) -> int:
    from convert import convert_checkpoint

    convert_checkpoint(args.hf_dir, args.out_dir, dtype=args.dtype)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a Hugging Face checkpoint folder to a Flax/Orbax folder")
    p.add_argument("hf_dir", help="folder with config.json and *.safetensors")
    p.add_argument("out_dir", help="output folder (written atomically)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.set_defaults(run=_convert)

    for name, text in [
        ("generate", "pruned greedy generation for one prompt and image"),
        ("eval", "batched, sharded evaluation of pruning methods on a dataset"),
        ("bench", "speed benchmarks: pruned vs unpruned, ours vs HF PyTorch"),
        ("demo", "run the main job on the embedded default model and data"),
    ]:
        sub.add_parser(name, help=text).set_defaults(run=_not_yet(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
