"""Exact-match accuracy of a shipped tiny model (HF PyTorch, greedy) on easy-VQA or detail-VQA.

    python -m benchmarks.tiny_models.evaluate   # both shipped folders, full test split
    python -m benchmarks.tiny_models.evaluate --data detail-vqa   # the detail-VQA folders, its test split

Prompt: `Processor.chat_prompt(question)` (one user turn: image, then the
question; generation prompt appended). Answer: the generated tokens before the
first eos, decoded without special tokens, then `normalize_answer` (lowercase,
whitespace-collapsed); exact match against the easy-VQA answer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.tiny_models.data import load_image, normalize_answer, questions_flat
from benchmarks.tiny_models.train import model_class, to_model_inputs

ASSETS = Path(__file__).resolve().parents[2] / "jax_pruning" / "assets"
SHIPPED = {"llava_next": ASSETS / "tiny_llava_next", "qwen2_vl": ASSETS / "tiny_qwen2_vl"}
SHIPPED_DETAIL = {"llava_next": ASSETS / "tiny_llava_next_detail", "qwen2_vl": ASSETS / "tiny_qwen2_vl_detail"}
SHIPPED_BY_DATA = {"easy-vqa": SHIPPED, "detail-vqa": SHIPPED_DETAIL}
RESULTS = Path(__file__).resolve().parents[1] / "results" / "amd-epyc-2c"
RESULT_STEMS = {"easy-vqa": "tiny_models_hf", "detail-vqa": "tiny_models_detail_hf"}
MAX_NEW_TOKENS = 3  # easy-VQA answers are one token + eos
MAX_NEW_TOKENS_BY_DATA = {"easy-vqa": MAX_NEW_TOKENS, "detail-vqa": 4}  # detail-VQA: two digits + eos (room to spare)
KIND_ORDER = {"easy-vqa": ("shape", "color", "yes/no"),
              "detail-vqa": ("count_color", "count_shape", "color_at", "left_of", "read_digits")}


def answer_kind(answer_text: str, question: str | None = None, data: str = "easy-vqa") -> str:
    """easy-VQA answers are a shape, a colour, or yes/no; detail-VQA: the question's type."""
    if data == "detail-vqa":
        from jax_pruning.eval.detail_vqa import question_type

        return question_type(question)
    a = normalize_answer(answer_text)
    return "yes/no" if a in ("yes", "no") else "shape" if a in ("circle", "rectangle", "triangle") else "color"


def load(folder):
    """-> (HF model in eval mode, jax_pruning Processor, model_type) from a checkpoint folder."""
    from jax_pruning.processing import Processor

    processor = Processor.from_folder(folder)
    model = model_class(processor.model_type).from_pretrained(folder, local_files_only=True).eval()
    return model, processor, processor.model_type


def decode_answers(tokenizer, new_tokens: np.ndarray, eos_id: int) -> list[str]:
    """[B, N] generated ids -> normalised answers (tokens before the first eos)."""
    out = []
    for row in np.asarray(new_tokens):
        stop = np.flatnonzero(row == eos_id)
        row = row[: stop[0]] if stop.size else row
        out.append(normalize_answer(tokenizer.decode(row.tolist(), skip_special_tokens=True)))
    return out


@torch.no_grad()
def answer(model, processor, family: str, images, questions, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers for one batch (left padded)."""
    batch = processor(images, [processor.chat_prompt(q) for q in questions])
    inputs = to_model_inputs(batch, family)
    inputs.pop("position_ids", None)  # generate derives positions from the left-padded mask itself
    tokenizer = processor.tokenizer
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return decode_answers(tokenizer, generated[:, inputs["input_ids"].shape[1]:].numpy(), tokenizer.eos_token_id)


def evaluate(folder, split: str = "test", batch_size: int = 64, limit: int | None = None,
             data: str = "easy-vqa") -> dict:
    """Exact-match accuracy over `split` (first `limit` questions if given)."""
    model, processor, family = load(folder)
    if data == "detail-vqa":  # only the images the limit needs are generated
        from jax_pruning.eval.detail_vqa import EVAL_TYPES

        images = None if limit is None else -(-limit // len(EVAL_TYPES))
        rows = questions_flat(split, data, images=images)[:limit]
    else:
        rows = questions_flat(split)[:limit]
    correct, start = 0, time.perf_counter()
    by_kind: dict[str, list[int]] = {}
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        got = answer(model, processor, family, [load_image(r[1]) for r in chunk], [r[2] for r in chunk],
                     MAX_NEW_TOKENS_BY_DATA[data])
        for g, r in zip(got, chunk):
            hit = int(g == normalize_answer(r[3]))
            correct += hit
            by_kind.setdefault(answer_kind(r[3], r[2], data), []).append(hit)
    visual = int((processor([load_image(rows[0][1])], [processor.chat_prompt("x")])["input_ids"]
                  == model.config.image_token_id).sum())
    return dict(family=family, data=data, split=split, questions=len(rows), correct=int(correct),
                accuracy=round(correct / len(rows), 4), eval_wall_s=round(time.perf_counter() - start, 1),
                accuracy_by_kind={k: round(float(np.mean(v)), 4) for k, v in sorted(by_kind.items())},
                batch_size=batch_size, params=sum(p.numel() for p in model.parameters()),
                visual_tokens_per_image=visual, folder_bytes=sum(f.stat().st_size for f in Path(folder).iterdir()))


def kinds(result: dict, data: str = "easy-vqa") -> str:
    acc = result["accuracy_by_kind"]
    return " / ".join(f"{100 * acc[k]:.1f}%" if k in acc else "-" for k in KIND_ORDER[data])


def write_results(results: list[dict], path_stem: Path, data: str = "easy-vqa") -> None:
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    old = path_stem.with_suffix(".json")  # keep the rows of families not evaluated this time (--family X)
    if old.is_file():
        done = {r["family"] for r in results}
        kept = [r for r in json.loads(old.read_text()) if r.get("family") not in done]
        results = sorted(kept + list(results), key=lambda r: r["family"])
    path_stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    name = {"easy-vqa": "easy-VQA", "detail-vqa": "detail-VQA"}[data]
    cpu = data == "detail-vqa"  # those runs also log their CPU time (the machine was shared)
    lines = [
        f"# Embedded tiny models on {name} (HF PyTorch, CPU, greedy)", "",
        "| model | params | visual tokens / image | train wall (s) | " + ("train CPU (s) | " if cpu else "")
        + f"train threads | test questions | accuracy | {' / '.join(KIND_ORDER[data])} | eval wall (s) | folder (KB) |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cpu else ""),
    ]
    for r in results:
        lines.append(f"| {r['family']} | {r['params']:,} | {r['visual_tokens_per_image']} | {r.get('train_wall_s', '?')} | "
                     + (f"{r.get('train_cpu_s', '?')} | " if cpu else "")
                     + f"{r.get('train_threads', '?')} | {r['questions']} | {100 * r['accuracy']:.2f}% | {kinds(r, data)} | "
                     f"{r['eval_wall_s']} | {r['folder_bytes'] // 1024} |")
    lines += ["", "Exact match of the normalised greedy answer (tokens before eos, lowercase) on the full",
              f"{name} test split. Recipe and commands: benchmarks/tiny_models/README.md."]
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(SHIPPED), action="append")
    parser.add_argument("--data", choices=sorted(SHIPPED_BY_DATA), default="easy-vqa")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--folder", default=None, help="evaluate this folder instead of the shipped one (one family)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="results path without suffix (default: by --data)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shipped = SHIPPED_BY_DATA[args.data]
    results = []
    for family in args.family or sorted(shipped):
        result = evaluate(args.folder or shipped[family], batch_size=args.batch_size, limit=args.limit,
                          data=args.data)
        suffix = "_detail" if args.data == "detail-vqa" else ""
        train_log = Path(__file__).with_name(f"train_log_{family}{suffix}.json")
        if train_log.is_file():
            stats = json.loads(train_log.read_text())
            result |= dict(train_wall_s=stats["train_wall_s"], train_threads=stats["threads"],
                           train_steps=stats["steps"], recipe=stats["recipe"], sizes=stats["sizes"])
            if "train_cpu_s" in stats:
                result["train_cpu_s"] = stats["train_cpu_s"]
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.limit is None and args.folder is None:
        write_results(results, Path(args.out or RESULTS / RESULT_STEMS[args.data]), args.data)


if __name__ == "__main__":
    main()
