"""The `jaxprune` command line: convert, generate, eval, bench, demo, plan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jax_pruning.registry import METHODS

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS / "tiny_llava_next"


def _value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        out[key] = _value(value)
    return out


def _pruners(methods: list[str], keeps: list[float], options: dict) -> list:
    import jax_pruning as jp

    out = []
    for method in methods:
        if method in ("none", "unpruned"):
            out.append(None)
            continue
        for keep in keeps:
            out.append(jp.pruner(method, keep_ratio=keep, **options))
    return out


def _load(path: str, dtype: str | None, mesh=None):
    import models
    from jax_pruning.processing import Processor

    return models.load(path, dtype, mesh=mesh), Processor.from_folder(path)


def _convert(args: argparse.Namespace) -> int:
    from convert import convert_checkpoint

    convert_checkpoint(args.hf_dir, args.out_dir, dtype=args.dtype, overwrite=args.overwrite)
    return 0


def _generate_pruners(methods: list[str] | None, keep: float, options: dict) -> list:
    """One spec per --method (None for none); with several methods each gets the options it declares."""
    import jax_pruning as jp
    from jax_pruning.methods import lookup

    methods = methods or ["none"]
    names = [m for m in methods if m not in ("none", "unpruned")]
    if len(methods) > 1 and options:
        unused = sorted(k for k in options if not any(k in lookup(m).options for m in names))
        if unused:
            raise ValueError(f"--option {', '.join(unused)}: not an option of any of {', '.join(names)}")
    out = []
    for method in methods:
        if method in ("none", "unpruned"):
            out.append(None)
            continue
        mine = options if len(methods) == 1 else {k: v for k, v in options.items() if k in lookup(method).options}
        out.append(jp.pruner(method, keep_ratio=keep, **mine))
    return out


def _generate(args: argparse.Namespace) -> int:
    from PIL import Image

    import jax_pruning as jp

    specs = _generate_pruners(args.method, args.keep, _options(args.option))
    model, processor = _load(args.model, args.dtype)
    images = []
    if args.image:
        try:
            with Image.open(args.image) as image:
                images = [image.convert("RGB")]
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"--image {args.image}: cannot be decoded ({err})") from None
    prompt = processor.chat_prompt(args.prompt, with_image=bool(images))
    inputs = processor(images or None, [prompt])
    rows = []
    for spec in specs:
        out = jp.generate(model, inputs, spec, args.max_new_tokens)
        answer = processor.tokenizer.decode(out.tokens[0], skip_special_tokens=True).strip()
        print(answer if len(specs) == 1 else f"{out.stats['method']}: {answer}")
        s = out.stats
        print(f"[{s['method']} keep={s['keep_ratio']}] visual tokens {int(s['visual_tokens_before'][0])} -> "
              f"{int(out.visual_tokens[0])}; prefill {s['prefill_seconds'] * 1000:.1f} ms "
              f"({s['prefill_flops'] / 1e9:.2f} GFLOP)", file=sys.stderr)
        if args.show_kept and images:
            from jax_pruning.eval.overlay import method_title
            from jax_pruning.eval.token_views import views_of_output

            views = views_of_output(out, image_hw=(images[0].height, images[0].width), config=model.config)
            rows.append((method_title(s, int(out.visual_tokens[0]), answer), views))
    if args.show_kept and images:
        from jax_pruning.eval.overlay import save_comparison

        save_comparison(args.show_kept, images[0], rows)
        print(f"kept-token overlay written to {args.show_kept}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from jax_pruning.eval.datasets import open_dataset
    from jax_pruning.sweep import bare_prompt, sweep, sweep_table

    if args.distributed:
        from jax_pruning.eval.supervise import is_worker, run_supervised

        if not is_worker():  # re-run this command in a child and explain how it ended
            return run_supervised(args.argv, args.out, args.process_id)
        from jax_pruning.parallel import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)
    mesh = None
    if args.mesh or args.data_parallel or args.distributed:
        from jax_pruning.parallel import parse_mesh

        mesh = parse_mesh(args.mesh or "")
    model, processor = _load(args.model, args.dtype, mesh)
    name, _, path = args.data.partition(":")
    dataset = open_dataset(name, path or None, split=args.split, limit=args.limit, seed=args.seed)
    summaries = sweep(model, processor, dataset, _pruners(args.method, args.keep, _options(args.option)),
                      args.out, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                      resume=args.resume, mesh=mesh, prompt=bare_prompt(processor) if args.bare_prompt else None)
    if summaries is not None:  # process 0 (the only one with a table) under --distributed
        print(sweep_table(summaries))
        print(f"predictions, summaries and plots under {args.out}/; open {Path(args.out) / 'report.html'} "
              f"in a browser")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from jax_pruning.bench import format_table, run_bench, synthetic_batch

    model, processor = _load(args.model, args.dtype)
    inputs = synthetic_batch(processor, args.batch_size, args.image_size)
    rows = run_bench(model, inputs, _pruners(args.method, args.keep, _options(args.option)), args.repeats)
    print(format_table(rows))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from jax_pruning.demo import run_demo

    return run_demo(args.out, limit=args.limit)


def _plan(args: argparse.Namespace) -> int:
    import jax_pruning as jp
    from jax_pruning.plan import plan_memory

    spec = None if args.method in (None, "none") else jp.pruner(args.method, keep_ratio=args.keep,
                                                                **_options(args.option))
    plan = plan_memory(args.model, mesh=args.mesh, batch_size=args.batch_size, device_memory=args.device_memory,
                       visual_tokens=args.max_visual_tokens, prompt_tokens=args.prompt_tokens,
                       new_tokens=args.new_tokens, pruner=spec, dtype=args.dtype, fsdp=args.fsdp,
                       attention=args.attention)
    print(plan.to_json() if args.json else plan.table())
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="HF checkpoint folder or converted folder (default: the embedded tiny LLaVA-NeXT)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)


def _method_args(p: argparse.ArgumentParser, default_methods: list[str]) -> None:
    p.add_argument("--method", nargs="+", default=default_methods,
                   help=f"pruning methods (none, {', '.join(METHODS)})")
    p.add_argument("--keep", nargs="+", type=float, default=[0.25], help="keep ratios")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option")


def _plan_parser(sub) -> None:
    from jax_pruning.plan import ATTENTION, DEFAULT_NEW_TOKENS, DEFAULT_PROMPT_TOKENS

    p = sub.add_parser("plan", help="per-device memory of a pruned generate on a device mesh (nothing allocated)")
    p.add_argument("--model", required=True,
                   help="model folder or preset (llava-next-8b, qwen2-vl-7b, qwen2.5-vl-7b, qwen2.5-vl-72b, "
                        "qwen3-vl-8b)")
    p.add_argument("--mesh", default="data=1,model=1", help="device mesh, e.g. data=2,model=4")
    p.add_argument("--device-memory", default=None, help="memory per device, e.g. 16GiB, 80GB, 141GiB")
    p.add_argument("--batch-size", type=int, default=1, help="global batch (a multiple of the data axis)")
    p.add_argument("--max-visual-tokens", type=int, default=None,
                   help="visual tokens per sample (default: LLaVA-NeXT a 672x672 image, 2928; Qwen 1280)")
    p.add_argument("--prompt-tokens", type=int, default=DEFAULT_PROMPT_TOKENS, help="text tokens per sample")
    p.add_argument("--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help="max_new_tokens")
    p.add_argument("--method", default=None, help="pruning method (default: none)")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fsdp", action="store_true", help="also split the weights' embed axes over data")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--attention", choices=list(ATTENTION), default="xla",
                   help="attention scores: xla (what runs on GPU/TPU today: [L, S] scores materialised), "
                        "fused (a flash kernel), cpu (the query-blocked CPU path)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(run=_plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a Hugging Face checkpoint folder to a Flax/Orbax folder")
    p.add_argument("hf_dir", help="folder with config.json and *.safetensors")
    p.add_argument("out_dir", help="output folder (written atomically)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_convert)

    p = sub.add_parser("generate", help="pruned greedy generation for one prompt (and images)")
    _model_args(p)
    p.add_argument("--image", default=None, help="image file")
    p.add_argument("--prompt", required=True)
    p.add_argument("--method", nargs="+", default=None,
                   help="pruning method(s) (default: none); several: one answer and one overlay row each")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (with several methods: given to those that declare it)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--show-kept", metavar="PNG",
                   help="write a kept-token overlay of the first image (one row per method, with a legend)")
    p.set_defaults(run=_generate)

    p = sub.add_parser("eval", help="batched, resumable evaluation of pruning methods on a dataset")
    _model_args(p)
    p.add_argument("--data", default="easy-vqa",
                   help="easy-vqa, detail-vqa, moving-shapes (video), or NAME:PATH with NAME in jsonl (images or "
                        "videos), textvqa, gqa, pope, mme, scienceqa-img, docvqa, infovqa, chartqa, ocrbench")
    p.add_argument("--split", default=None,
                   help="default: the one the benchmark is scored on (easy-vqa / detail-vqa test, textvqa/docvqa validation, ...)")
    p.add_argument("--limit", type=int, default=None, help="N samples only (the first N, or a random N with --seed)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bare-prompt", action="store_true",
                   help="send the question alone (no task instruction), e.g. for the embedded tiny models")
    _method_args(p, ["none", "mr_pruner", "hilo"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--out", default="results")
    p.add_argument("--resume", action="store_true", help="skip samples already in predictions.jsonl")
    p.add_argument("--data-parallel", action="store_true", help="split batches over all devices (= --mesh data=all)")
    p.add_argument("--mesh", default=None, metavar="data=D,model=M",
                   help="device mesh: batches split D ways, weights M ways (default: all devices on data)")
    p.add_argument("--distributed", action="store_true",
                   help="one SPMD run over several processes (jax.distributed; run the same command on each)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address (default: from the cluster environment)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--heartbeat-timeout", type=int, default=100,
                   help="seconds before the others stop when a process dies or hangs")
    p.set_defaults(run=_eval)

    p = sub.add_parser("bench", help="pruned vs unpruned prefill latency on synthetic images")
    _model_args(p)
    _method_args(p, ["mr_pruner", "hilo", "fastv"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(run=_bench)

    p = sub.add_parser("demo", help="the main job on the embedded default model and easy-VQA")
    p.add_argument("--out", default="jaxprune-demo", help="folder for the table, predictions and plots")
    p.add_argument("--limit", type=int, default=100, help="easy-VQA test questions per run")
    p.set_defaults(run=_demo)

    _plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
            IsADirectoryError) as err:
        print(f"jaxprune {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
