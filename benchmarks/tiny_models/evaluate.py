"""Exact-match accuracy of a shipped tiny model (HF PyTorch, greedy) on easy-VQA.

    python -m benchmarks.tiny_models.evaluate   # both shipped folders, full test split

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
RESULTS = Path(__file__).resolve().parents[1] / "results" / "amd-epyc-2c"
MAX_NEW_TOKENS = 3  # answers are one token + eos


def answer_kind(answer_text: str) -> str:
    """easy-VQA answers are a shape, a colour, or yes/no."""
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
def answer(model, processor, family: str, images, questions) -> list[str]:
    """Greedy answers for one batch (left padded)."""
    batch = processor(images, [processor.chat_prompt(q) for q in questions])
    inputs = to_model_inputs(batch, family)
    inputs.pop("position_ids", None)  # generate derives positions from the left-padded mask itself
    tokenizer = processor.tokenizer
    generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return decode_answers(tokenizer, generated[:, inputs["input_ids"].shape[1]:].numpy(), tokenizer.eos_token_id)


def evaluate(folder, split: str = "test", batch_size: int = 64, limit: int | None = None) -> dict:
    """Exact-match accuracy over `split` (first `limit` questions if given)."""
    model, processor, family = load(folder)
    rows = questions_flat(split)[:limit]
    correct, start = 0, time.perf_counter()
    by_kind: dict[str, list[int]] = {}
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        got = answer(model, processor, family, [load_image(r[1]) for r in chunk], [r[2] for r in chunk])
        for g, r in zip(got, chunk):
            hit = int(g == normalize_answer(r[3]))
            correct += hit
            by_kind.setdefault(answer_kind(r[3]), []).append(hit)
    visual = int((processor([load_image(rows[0][1])], [processor.chat_prompt("x")])["input_ids"]
                  == model.config.image_token_id).sum())
    return dict(family=family, split=split, questions=len(rows), correct=int(correct),
                accuracy=round(correct / len(rows), 4), eval_wall_s=round(time.perf_counter() - start, 1),
                accuracy_by_kind={k: round(float(np.mean(v)), 4) for k, v in sorted(by_kind.items())},
                batch_size=batch_size, params=sum(p.numel() for p in model.parameters()),
                visual_tokens_per_image=visual, folder_bytes=sum(f.stat().st_size for f in Path(folder).iterdir()))


def kinds(result: dict) -> str:
    acc = result["accuracy_by_kind"]
    return " / ".join(f"{100 * acc[k]:.1f}%" if k in acc else "-" for k in ("shape", "color", "yes/no"))


def write_results(results: list[dict], path_stem: Path) -> None:
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    path_stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Embedded tiny models on easy-VQA (HF PyTorch, CPU, greedy)", "",
        "| model | params | visual tokens / image | train wall (s) | train threads | test questions | accuracy | shape / color / yes-no | eval wall (s) | folder (KB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['family']} | {r['params']:,} | {r['visual_tokens_per_image']} | {r.get('train_wall_s', '?')} | "
                     f"{r.get('train_threads', '?')} | {r['questions']} | {100 * r['accuracy']:.2f}% | {kinds(r)} | {r['eval_wall_s']} | "
                     f"{r['folder_bytes'] // 1024} |")
    lines += ["", "Exact match of the normalised greedy answer (tokens before eos, lowercase) on the full",
              "easy-VQA test split. Recipe and commands: benchmarks/tiny_models/README.md."]
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(SHIPPED), action="append")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--folder", default=None, help="evaluate this folder instead of the shipped one (one family)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "tiny_models_hf"), help="results path without suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for family in args.family or sorted(SHIPPED):
        result = evaluate(args.folder or SHIPPED[family], batch_size=args.batch_size, limit=args.limit)
        train_log = Path(__file__).with_name(f"train_log_{family}.json")
        if train_log.is_file():
            stats = json.loads(train_log.read_text())
            result |= dict(train_wall_s=stats["train_wall_s"], train_threads=stats["threads"],
                           train_steps=stats["steps"], recipe=stats["recipe"], sizes=stats["sizes"])
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.limit is None and args.folder is None:
        write_results(results, Path(args.out))


if __name__ == "__main__":
    main()
