"""Train the tiny video Qwen2-VL on moving-shapes (PyTorch, CPU) and save it as a Hub-style folder.

    python -m benchmarks.tiny_models.train_video jax_pruning/assets/tiny_qwen2_vl_video --threads 1

The model is the easy-VQA tiny Qwen2-VL's architecture (patch 4, temporal patch
2, merge 2: a 48x48 frame pair is 6x6 = 36 tokens, a clip of 8 frames 144),
with a word-level tokenizer over the moving-shapes words and a chat template
that places `<|video_pad|>` for a video item. `video_preprocessor_config.json`
keeps frames at their size. Every step packs each clip's three questions, in a
fresh order, into one multi-turn conversation (the video in the first user turn;
loss on the answers and the eos closing each). Inputs come from
`jax_pruning.processing.Processor` on the folder being written, so training sees
exactly what `jaxprune eval` builds.

Stage 1 (`--vision-epochs N`, as for detail-VQA): linear heads on every merged
video token the LLM will see, labelled from the clip description over the
token's area in its two frames: the colour covering most of it, whether the
mover is in it, the mover's direction there, and whether an object that first
shows in this temporal patch is in it. Every label is local to the token's own
8x8 px and two frames (Qwen2-VL's ViT attends within one temporal patch only),
so what the answers need sits in the tokens that show it; the LLM then has to
find those tokens (and, for "appears last", the latest temporal patch, which
its M-RoPE positions give).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.tiny_models.configs import QWEN_MERGE, QWEN_PATCH, TinySizes, qwen2_vl_config, qwen2_vl_image_processor
from benchmarks.tiny_models.data import answer_mask, conversation, normalize_answer
from benchmarks.tiny_models.tokenizer import build_tokenizer, generation_prompt_ids
from benchmarks.tiny_models.train import answer_step, lr_at, parse_size, progress_entry, to_model_inputs
from benchmarks.tiny_models.vision_pretrain import reset_vision_init
from jax_pruning.eval import motion_vqa as mv
from jax_pruning.eval.samples import Clip as Video

QWEN_VIDEO_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)
MAX_NEW_TOKENS = 2  # one-word answers + eos


@dataclass(frozen=True)
class VideoRecipe:
    clips: int = 12000  # training clips (moving-shapes train split, first n)
    epochs: int = 4
    batch_clips: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    vision_epochs: int = 6  # stage 1 epochs (dense heads on the merged video tokens); 0: no stage 1
    vision_clips: int = 4000  # stage 1 clips (the first n of the training clips)
    vision_lr: float = 4e-3
    vision_batch_clips: int = 16
    positive_weight: float = 8.0  # stage 1 loss weight of a token showing the mover / its direction / an arrival
    freeze_vision: int = 1  # 1: stage 2 trains the language model only (0: the tower too)


VIDEO_HEADS = {"colour": 1 + len(mv.COLORS), "moving": 2, "direction": 1 + len(mv.DIRECTIONS), "new": 2}
TOKEN_PX = QWEN_PATCH * QWEN_MERGE  # a merged token covers 8x8 px of each of its two frames


def owners(clip) -> np.ndarray:
    """[FRAMES, SIDE, SIDE] index into clip.things of the object on each pixel (-1: background)."""
    out = np.full((mv.FRAMES, mv.SIDE, mv.SIDE), -1)
    for t in range(mv.FRAMES):
        for k, thing in enumerate(clip.things):
            if t >= thing.first_frame:
                x, y = thing.position(t)
                out[t, y:y + thing.size, x:x + thing.size][mv._shape_mask(thing)] = k
    return out


def token_labels(clip) -> np.ndarray:
    """[temporal patches * rows * cols, len(VIDEO_HEADS)] labels of the merged tokens, in the tower's order."""
    own, colours, side = owners(clip), list(mv.COLORS), mv.SIDE // TOKEN_PX
    rows = []
    for t in range(mv.FRAMES // 2):
        for r in range(side):
            for c in range(side):
                area = own[2 * t:2 * t + 2, r * TOKEN_PX:(r + 1) * TOKEN_PX, c * TOKEN_PX:(c + 1) * TOKEN_PX]
                ids, counts = np.unique(area[area >= 0], return_counts=True)
                things = [clip.things[i] for i in ids]
                colour = colours.index(things[int(counts.argmax())].color) + 1 if len(ids) else 0
                mover = next((th for th in things if th.direction), None)
                direction = list(mv.DIRECTIONS).index(mover.direction) + 1 if mover else 0
                new = any(th.first_frame == 2 * t and t > 0 for th in things)
                rows.append((colour, int(mover is not None), direction, int(new)))
    return np.asarray(rows, np.int64)


def video_features(model, inputs: dict) -> torch.Tensor:
    """[videos, tokens, D] merged video tokens (what the LLM reads at the <|video_pad|> slots)."""
    out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    return torch.stack(list(out.pooler_output))


def pretrain_vision(model, processor, recipe: VideoRecipe, rng, log=print) -> list[dict]:
    """Stage 1: the dense heads (VIDEO_HEADS) on the video tower + merger. -> per-epoch log."""
    width = model.config.text_config.hidden_size
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, n) for k, n in VIDEO_HEADS.items()})
    params = list(model.model.visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.vision_lr, weight_decay=0.0)
    clips = [mv.clip_of("train", i) for i in range(min(recipe.vision_clips, recipe.clips))]
    labels = torch.as_tensor(np.stack([token_labels(c) for c in clips]))  # [N, tokens, heads]
    prompt = processor.chat_prompt("x", video=True)
    w = recipe.positive_weight
    weight = {name: None if name == "colour" else torch.tensor([1.0] + [w] * (n - 1)) for name, n in VIDEO_HEADS.items()}
    out, step, cpu_start = [], 0, time.process_time()
    for epoch in range(recipe.vision_epochs):
        order, hits = rng.permutation(len(clips)), {k: [0, 0] for k in VIDEO_HEADS}
        for first in range(0, len(clips), recipe.vision_batch_clips):
            idx = order[first:first + recipe.vision_batch_clips]
            for group in optimizer.param_groups:
                group["lr"] = recipe.vision_lr * min(1.0, (step + 1) / 50)
            batch = batch_inputs(processor, [clips[i] for i in idx], [prompt] * len(idx))
            features = video_features(model, to_model_inputs(batch, "qwen2_vl"))
            target, loss = labels[idx], 0.0
            for j, (name, head) in enumerate(heads.items()):
                logits = head(features)
                loss = loss + torch.nn.functional.cross_entropy(logits.flatten(0, 1), target[..., j].flatten(),
                                                                weight=weight[name])
                some = target[..., j] > 0
                hits[name][0] += int((logits.argmax(-1)[some] == target[..., j][some]).sum())
                hits[name][1] += int(some.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        entry = {"vision_epoch": epoch + 1, "loss": round(float(loss.detach()), 4),
                 **{f"{k}_accuracy": round(h / max(1, n), 4) for k, (h, n) in hits.items()},
                 "cpu_s": round(time.process_time() - cpu_start, 1)}
        out.append(entry)
        log(json.dumps(entry))
    return out


def save_processing_files(out_dir: Path, sizes: TinySizes):
    """config + tokenizer (with the video template) + image processor + video sizes -> out_dir; -> config."""
    tokenizer = build_tokenizer("qwen2_vl", mv.words())
    tokenizer.chat_template = QWEN_VIDEO_TEMPLATE
    config = qwen2_vl_config(tokenizer, sizes, "easy-vqa")  # patch 4: the easy-VQA geometry
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    images = qwen2_vl_image_processor("easy-vqa")
    images.save_pretrained(out_dir)
    factor = QWEN_PATCH * QWEN_MERGE
    (out_dir / "video_preprocessor_config.json").write_text(json.dumps({
        "video_processor_type": "Qwen2VLVideoProcessor", "patch_size": QWEN_PATCH, "temporal_patch_size": 2,
        "merge_size": QWEN_MERGE, "image_mean": images.image_mean, "image_std": images.image_std,
        "size": {"shortest_edge": (2 * factor) ** 2, "longest_edge": mv.SIDE * mv.SIDE}}, indent=2) + "\n")
    return config


def batch_inputs(processor, clips, texts) -> dict:
    videos = [[mv.frames(c)] for c in clips]
    return processor(None, texts, videos=videos, video_fps=mv.FPS)


def train(out_dir, recipe: VideoRecipe = VideoRecipe(), sizes: TinySizes = TinySizes(), log_every: int = 25,
          max_steps: int | None = None) -> dict:
    from transformers import Qwen2VLForConditionalGeneration

    from jax_pruning.processing import Processor

    out_dir = Path(out_dir)
    torch.manual_seed(recipe.seed)
    config = save_processing_files(out_dir, sizes)
    model = Qwen2VLForConditionalGeneration(config).float().train()
    reset_vision_init(model, "qwen2_vl")
    processor = Processor.from_folder(out_dir)
    prompt_ids, eos_id = generation_prompt_ids(processor.tokenizer), processor.tokenizer.eos_token_id
    rng = np.random.default_rng(recipe.seed)
    cpu_start = time.process_time()
    log = pretrain_vision(model, processor, recipe, rng, log=lambda e: print(e, flush=True)) \
        if recipe.vision_epochs else []
    if recipe.freeze_vision:
        model.model.visual.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(recipe.clips / recipe.batch_clips)
    total = steps_per_epoch * recipe.epochs if max_steps is None else min(max_steps, steps_per_epoch * recipe.epochs)
    running, step, start = [], 0, time.perf_counter()
    while step < total:
        order = rng.permutation(recipe.clips)
        for first in range(0, recipe.clips, recipe.batch_clips):
            if step >= total:
                break
            clips = [mv.clip_of("train", int(i)) for i in order[first:first + recipe.batch_clips]]
            texts = []
            for clip in clips:
                qs = [mv.questions(clip)[j] for j in rng.permutation(len(mv.QUESTION_TYPES))]
                turns = conversation([q.text for q in qs], [q.answer for q in qs])
                turns[0]["content"] = [{"type": "video"} if item["type"] == "image" else item
                                       for item in turns[0]["content"]]
                texts.append(processor.tokenizer.apply_chat_template(turns, tokenize=False))
            batch = batch_inputs(processor, clips, texts)
            mask = torch.as_tensor(answer_mask(batch["input_ids"], prompt_ids, eos_id) & (batch["attention_mask"] > 0))
            inputs = to_model_inputs(batch, "qwen2_vl")
            running.append(answer_step(model, inputs, mask, optimizer, lr_at(step, total, recipe), trained,
                                       recipe.grad_clip))
            step += 1
            if step % log_every == 0 or step == total:
                entry = progress_entry(step, steps_per_epoch, running, start, cpu_start)
                running = []
                log.append(entry)
                print(json.dumps(entry), flush=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval().save_pretrained(out_dir)
    save_processing_files(out_dir, sizes)  # the model's save rewrote config.json only; keep every file in step
    return dict(family="qwen2_vl", data="moving-shapes", recipe=asdict(recipe), sizes=asdict(sizes), steps=step,
                train_wall_s=round(wall, 1), train_cpu_s=round(cpu, 1), threads=torch.get_num_threads(),
                params=sum(p.numel() for p in model.parameters()), log=log)


@torch.no_grad()
def answer_video(model, processor, clips, questions, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """HF greedy answers (normalised) for one batch of videos (jax_pruning Clips) and questions."""
    tokenizer = processor.tokenizer
    texts = [processor.chat_prompt(q, video=True) for q in questions]
    batch = processor(None, texts, videos=[[c.frames] for c in clips], video_fps=[c.fps for c in clips])
    inputs = to_model_inputs(batch, "qwen2_vl")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    answers = []
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        row = row[:row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        answers.append(normalize_answer(tokenizer.decode(row, skip_special_tokens=True)))
    return answers


@torch.no_grad()
def evaluate(folder, split: str = "test", clips: int | None = None, batch_clips: int = 32) -> dict:
    """HF greedy exact match over the split's questions (the first `clips` clips), overall and per type."""
    from transformers import Qwen2VLForConditionalGeneration

    from jax_pruning.processing import Processor

    model = Qwen2VLForConditionalGeneration.from_pretrained(folder, local_files_only=True).float().eval()
    processor = Processor.from_folder(folder)
    n = mv.SPLIT_CLIPS[split] if clips is None else clips
    rows = [(c, q) for i in range(n) for c in [mv.clip_of(split, i)] for q in mv.questions(c)]
    hits: dict[str, list[int]] = {t: [] for t in mv.QUESTION_TYPES}
    start = time.perf_counter()
    for first in range(0, len(rows), batch_clips):
        chunk = rows[first:first + batch_clips]
        got = answer_video(model, processor, [Video(mv.frames(c), mv.FPS) for c, _ in chunk], [q.text for _, q in chunk])
        for answer, (_, q) in zip(got, chunk):
            hits[q.type].append(int(answer == q.answer))
    every = [h for v in hits.values() for h in v]
    files = [f for f in Path(folder).iterdir() if f.is_file()]
    return {"split": split, "questions": len(every), "accuracy": float(np.mean(every)),
            "accuracy_by_type": {t: float(np.mean(v)) for t, v in hits.items()},
            "eval_wall_s": round(time.perf_counter() - start, 1), "folder_bytes": sum(f.stat().st_size for f in files),
            "visual_tokens_per_clip": (mv.FRAMES // 2) * (mv.SIDE // (QWEN_PATCH * QWEN_MERGE)) ** 2}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    for field, value in asdict(VideoRecipe()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--size", action="append", default=[], type=parse_size, metavar="FIELD=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-clips", type=int, default=None, help="test clips to score (default: all 500)")
    parser.add_argument("--log", type=Path, default=None, help="write the run stats (JSON) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = VideoRecipe(**{f: getattr(args, f) for f in asdict(VideoRecipe())})
    stats = train(args.out_dir, recipe, TinySizes(**dict(args.size)))
    stats["eval"] = evaluate(args.out_dir, clips=args.eval_clips)
    print(json.dumps({k: v for k, v in stats.items() if k != "log"}))
    if args.log:
        args.log.write_text(json.dumps(stats, indent=1) + "\n")


if __name__ == "__main__":
    main()
