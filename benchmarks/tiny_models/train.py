"""Train a tiny LLaVA-NeXT or Qwen2-VL on easy-VQA or detail-VQA (PyTorch, CPU) and save it as a Hub-style folder.

    python -m benchmarks.tiny_models.train llava_next jax_pruning/assets/tiny_llava_next
    python -m benchmarks.tiny_models.train qwen2_vl jax_pruning/assets/tiny_qwen2_vl_detail --data detail-vqa ...

Inputs are built by `jax_pruning.processing.Processor` from the folder being
written (its tokenizer / processor files are saved first), so training sees
exactly the prompts the JAX side will build. Left padding throughout, with
positions counted from the first real token (what HF `generate` does).
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

from benchmarks.tiny_models.configs import TinySizes, build
from benchmarks.tiny_models.data import answer_mask, balanced_pick, conversation, grouped_by_image, load_image
from benchmarks.tiny_models.tokenizer import generation_prompt_ids

FAMILIES = ("llava_next", "qwen2_vl")
DETAIL_TRAIN_IMAGES = 8000  # detail-VQA images generated for training when max_images is not given


@dataclass(frozen=True)
class Recipe:
    epochs: int = 6
    batch_images: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    max_images: int | None = None  # None: the whole training split (4000 images)
    augment: bool = False  # random flips / 90-degree turns: easy-VQA answers do not depend on orientation
    vision_pretrain_epochs: int = 0  # stage 1 (vision_pretrain.py): shape + colour heads on the image features
    vision_batch_images: int = 32
    vision_lr: float = 2e-3  # constant after warm-up (vision_pretrain.py says why)
    torch_vision_init: bool = True  # PyTorch default init of the vision Linear/Conv layers (idem)
    data: str = "easy-vqa"  # or "detail-vqa" (then max_images is the number of generated training images)
    max_questions: int | None = None  # at most this many questions (a fresh random subset) per conversation
    freeze_vision: bool = False  # stage 2 trains the language model only (vision tower + projector frozen)
    balance_types: bool = False  # detail-VQA: pick questions type by type (data.balanced_pick), not uniformly
    dense_positive_weight: float = 1.0  # detail-VQA stage 1: loss weight of labelled tokens in the centre/digit heads
    train_projector: bool = False  # with freeze_vision, LLaVA-NeXT: the projector trains too (tower output cached)
    torch_text_init: bool = False  # PyTorch default init of the language model's Linear layers (+ lm_head) first


def model_class(family: str):
    from transformers import LlavaNextForConditionalGeneration, Qwen2VLForConditionalGeneration

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return LlavaNextForConditionalGeneration if family == "llava_next" else Qwen2VLForConditionalGeneration


def to_model_inputs(batch: dict, family: str) -> dict:
    """Processor output (NumPy) -> torch kwargs of the HF forward."""
    inputs = {k: torch.as_tensor(v) for k, v in batch.items() if k != "images_per_sample"}
    if family == "llava_next":  # Qwen computes M-RoPE positions from the mask itself
        inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs


def answer_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor):
    """Mean cross-entropy of the answer tokens (logits at t-1 predict token t); also token accuracy."""
    pred, target, keep = logits[:, :-1], input_ids[:, 1:], mask[:, 1:]  # [B, T-1, V], [B, T-1]
    chosen, wanted = pred[keep], target[keep]  # [N, V], [N]
    loss = torch.nn.functional.cross_entropy(chosen, wanted)
    return loss, (chosen.argmax(-1) == wanted).float().mean()


def answer_step(model, inputs: dict, mask, optimizer, lr: float, params, grad_clip: float) -> tuple[float, float]:
    """One optimizer step on the answer loss at learning rate `lr`. -> (loss, answer-token accuracy)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss, accuracy = answer_loss(model(**inputs).logits, inputs["input_ids"], mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.item(), accuracy.item()


def progress_entry(step: int, steps_per_epoch: int, running: list, start: float, cpu_start: float) -> dict:
    """The log line of the steps since the last one (`running`: their (loss, accuracy) pairs)."""
    mean_loss, mean_acc = np.mean(running, axis=0)
    return dict(step=step, epoch=round(step / steps_per_epoch, 2), loss=round(float(mean_loss), 4),
                token_accuracy=round(float(mean_acc), 4), wall_s=round(time.perf_counter() - start, 1),
                cpu_s=round(time.process_time() - cpu_start, 1))


def orient(image, which: int):
    """One of the 8 flips/turns of the square (0 = unchanged)."""
    from PIL import Image

    ops = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
           Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
           Image.Transpose.TRANSVERSE]
    return image if ops[which] is None else image.transpose(ops[which])


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    warm = max(1, int(total * recipe.warmup_fraction))
    if step < warm:
        return recipe.lr * (step + 1) / warm
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def save_processing_files(out_dir: Path, config, saveables) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    for obj in saveables:
        obj.save_pretrained(out_dir)


def train(family: str, out_dir, recipe: Recipe = Recipe(), sizes: TinySizes = TinySizes(), log_every: int = 25,
          max_steps: int | None = None, init_from=None, init_vision_from=None, save_every: int = 0) -> dict:
    """Train (from scratch, or on from the weights in `init_from`) and save weights + tokenizer/processor
    files into `out_dir`. -> run stats."""
    from jax_pruning.processing import Processor

    out_dir = Path(out_dir)
    torch.manual_seed(recipe.seed)
    config, tokenizer, saveables = build(family, sizes, recipe.data)
    if init_from is not None:  # loaded before out_dir is written: they may be the same folder
        model = model_class(family).from_pretrained(init_from, local_files_only=True).float().train()
        config = model.config
    else:
        model = model_class(family)(config).float().train()
        if recipe.torch_vision_init:
            from benchmarks.tiny_models.vision_pretrain import reset_vision_init

            reset_vision_init(model, family)
        if init_vision_from is not None:  # a stage-1 folder's vision tower + projector into a fresh model
            from benchmarks.tiny_models.vision_pretrain import vision_modules

            source = model_class(family).from_pretrained(init_vision_from, local_files_only=True).float()
            for mine, theirs in zip(vision_modules(model, family), vision_modules(source, family)):
                mine.load_state_dict(theirs.state_dict())
            del source
    if recipe.torch_text_init:  # also after init_from: a stage-1 folder holds an untrained (HF-init) LLM
        for sub in [*model.model.language_model.modules(), model.lm_head]:
            if isinstance(sub, torch.nn.Linear):
                sub.reset_parameters()
    save_processing_files(out_dir, config, saveables)
    processor = Processor.from_folder(out_dir)
    prompt_ids, eos_id = generation_prompt_ids(processor.tokenizer), processor.tokenizer.eos_token_id

    if recipe.data == "detail-vqa":
        samples = grouped_by_image("train", "detail-vqa", images=recipe.max_images or DETAIL_TRAIN_IMAGES)
    else:
        samples = grouped_by_image("train")[: recipe.max_images]
    steps_per_epoch = math.ceil(len(samples) / recipe.batch_images)
    total = steps_per_epoch * recipe.epochs if max_steps is None else min(max_steps, steps_per_epoch * recipe.epochs)
    if recipe.freeze_vision:
        from benchmarks.tiny_models.vision_pretrain import vision_modules

        frozen = {id(p) for m in vision_modules(model, family) for p in m.parameters()}
        if recipe.train_projector and family == "llava_next":
            frozen -= {id(p) for p in model.model.multi_modal_projector.parameters()}
    else:
        frozen = set()
    trained = [(n, p) for n, p in model.named_parameters() if id(p) not in frozen]
    decay = [p for n, p in trained if p.ndim >= 2]
    no_decay = [p for n, p in trained if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, betas=(0.9, 0.98),
    )
    rng = np.random.default_rng(recipe.seed)
    log, step, start, cpu_start = [], 0, time.perf_counter(), time.process_time()
    if recipe.vision_pretrain_epochs:
        from benchmarks.tiny_models.vision_pretrain import pretrain_vision

        pretrain, extra = pretrain_vision, {}
        if recipe.data == "detail-vqa":
            from benchmarks.tiny_models.vision_pretrain import DENSE_HEADS
            from benchmarks.tiny_models.vision_pretrain import pretrain_vision_dense as pretrain

            extra = {"positive_weight": {k: recipe.dense_positive_weight for k in DENSE_HEADS
                                         if k.startswith(("centre", "digit"))}}
        log += pretrain(model, family, processor, samples, recipe.vision_pretrain_epochs,
                        recipe.vision_batch_images, recipe.vision_lr, rng, load_image, lambda b, f: to_model_inputs(b, f),
                        log=lambda e: print(json.dumps(e), flush=True), **extra)
    for p in model.parameters():  # after stage 1 (which trains the vision path whatever the recipe)
        p.requires_grad_(id(p) not in frozen)
    features = None
    if recipe.freeze_vision and total > 0:  # the frozen tower's output, computed once per training image
        if recipe.augment:
            raise ValueError("freeze_vision caches each image's features: it cannot be combined with augment")
        features = frozen_features(model, family, processor, samples,
                                   pre_projector=recipe.train_projector and family == "llava_next")
    running = []
    while step < total:
        for first in range(0, len(samples), recipe.batch_images):
            if first == 0:
                order = rng.permutation(len(samples))
            if step >= total:
                break
            chosen_idx = order[first:first + recipe.batch_images]
            chosen = [samples[i] for i in chosen_idx]
            texts = []
            for s in chosen:  # a fresh question order every time, so no answer always sits at turn 1
                if recipe.balance_types and s.kinds:
                    perm = balanced_pick(s.kinds, recipe.max_questions, rng)
                else:
                    perm = rng.permutation(len(s.questions))[:recipe.max_questions]
                texts.append(processor.tokenizer.apply_chat_template(
                    conversation([s.questions[j] for j in perm], [s.answers[j] for j in perm]), tokenize=False))
            images = [load_image(s.path) for s in chosen]
            if recipe.augment:
                images = [orient(im, int(rng.integers(8))) for im in images]
            batch = processor(images, texts)
            mask = torch.as_tensor(answer_mask(batch["input_ids"], prompt_ids, eos_id) & (batch["attention_mask"] > 0))
            inputs = to_model_inputs(batch, family)
            if features is not None:
                inputs = with_cached_features(model, family, inputs, [features[i] for i in chosen_idx],
                                              project=recipe.train_projector and family == "llava_next")
            running.append(answer_step(model, inputs, mask, optimizer, lr_at(step, total, recipe),
                                       [p for _, p in trained], recipe.grad_clip))
            step += 1
            if step % log_every == 0 or step == total:
                entry = progress_entry(step, steps_per_epoch, running, start, cpu_start)
                running = []
                log.append(entry)
                print(json.dumps(entry), flush=True)
            if save_every and step % save_every == 0 and step < total:  # a snapshot to evaluate mid-run
                model.save_pretrained(out_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval().save_pretrained(out_dir)
    for obj in saveables:  # save_pretrained of the model rewrites config.json only
        obj.save_pretrained(out_dir)
    return dict(family=family, recipe=asdict(recipe), sizes=asdict(sizes), steps=step, train_wall_s=round(wall, 1),
                train_cpu_s=round(cpu, 1),
                threads=torch.get_num_threads(), params=sum(p.numel() for p in model.parameters()),
                train_images=len(samples), init_from=None if init_from is None else str(init_from),
                **({} if init_vision_from is None else {"init_vision_from": str(init_vision_from)}), log=log)


@torch.no_grad()
def frozen_features(model, family: str, processor, samples, batch_images: int = 32,
                    pre_projector: bool = False) -> list[torch.Tensor]:
    """Per sample, what the (frozen) image-feature path gives the LLM: Qwen2-VL the merged tokens [N, D];
    LLaVA-NeXT the projected tokens of each crop [crops, P, D] before packing (the image_newline, which stage 2
    trains, is added per step by `with_cached_features`)."""
    from benchmarks.tiny_models.vision_pretrain import dense_token_features

    prompt, out = processor.chat_prompt("x"), []
    model.eval()
    for first in range(0, len(samples), batch_images):
        chunk = samples[first:first + batch_images]
        inputs = to_model_inputs(processor([load_image(s.path) for s in chunk], [prompt] * len(chunk)), family)
        if pre_projector:  # LLaVA-NeXT, projector trained in stage 2: the tower's output [B, crops * P, Dv]
            pixels = inputs["pixel_values"]
            hidden = model.model.vision_tower(pixel_values=pixels.flatten(0, 1), output_hidden_states=True)
            hidden = hidden.hidden_states[-1][:, 1:]  # CLS dropped ("default" strategy)
            tokens = hidden.reshape(len(chunk), -1, hidden.shape[-1])
        else:
            tokens = dense_token_features(model, family, inputs)  # [B, crops * P, D]
        if family == "llava_next":
            crops = inputs["pixel_values"].shape[1]
            tokens = tokens.reshape(len(chunk), crops, -1, tokens.shape[-1])
        out += list(tokens)
    model.train()
    return out


def with_cached_features(model, family: str, inputs: dict, features: list[torch.Tensor],
                         project: bool = False) -> dict:
    """The forward's inputs with the image features given (HF `mm_encoder_outputs`) instead of pixel values."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    inputs = dict(inputs)
    inputs.pop("pixel_values")
    if family == "llava_next":
        inner = model.model
        if project:  # cached tower output -> the (trained) projector
            features = [inner.multi_modal_projector(f) for f in features]
        features, _ = inner.pack_image_features(features, inputs["image_sizes"], "default",
                                                image_newline=inner.image_newline)
    inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=list(features))}
    return inputs


def parse_size(item: str) -> tuple[str, object]:
    """"text_hidden=96" -> ("text_hidden", 96); "rope_theta=4" -> float; "mrope_section=2,3,3" -> a tuple."""
    key, _, value = item.partition("=")
    if key == "rope_theta":
        return key, float(value)
    if key == "mrope_section":
        return key, tuple(int(v) for v in value.split(","))
    return key, int(value)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=FAMILIES)
    parser.add_argument("out_dir")
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument("--batch-images", type=int, default=Recipe.batch_images)
    parser.add_argument("--lr", type=float, default=Recipe.lr)
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--augment", action="store_true", help="random flips / 90-degree turns of the images")
    parser.add_argument("--vision-pretrain-epochs", type=int, default=0, help="stage 1: shape + colour heads on the image features")
    parser.add_argument("--vision-batch-images", type=int, default=Recipe.vision_batch_images)
    parser.add_argument("--init-from", default=None, help="continue from the weights of this folder")
    parser.add_argument("--init-vision-from", default=None,
                        help="a fresh model (--size) with the vision tower + projector of this (stage-1) folder")
    parser.add_argument("--data", choices=("easy-vqa", "detail-vqa"), default="easy-vqa")
    parser.add_argument("--max-questions", type=int, default=None, help="at most N questions per conversation")
    parser.add_argument("--freeze-vision", action="store_true", help="stage 2 trains the language model only")
    parser.add_argument("--balance-types", action="store_true", help="detail-VQA: ask each question type equally often")
    parser.add_argument("--dense-positive-weight", type=float, default=Recipe.dense_positive_weight,
                        help="detail-VQA stage 1: loss weight of the labelled tokens of the centre and digit heads")
    parser.add_argument("--vision-lr", type=float, default=Recipe.vision_lr)
    parser.add_argument("--train-projector", action="store_true",
                        help="with --freeze-vision (LLaVA-NeXT): the projector trains in stage 2 too")
    parser.add_argument("--torch-text-init", action="store_true",
                        help="PyTorch default init of the language model's Linear layers (and lm_head) before training")
    parser.add_argument("--warmup-fraction", type=float, default=Recipe.warmup_fraction)
    parser.add_argument("--size", action="append", default=[], metavar="FIELD=INT",
                        help="override a TinySizes field, e.g. --size text_hidden=96")
    parser.add_argument("--save-every", type=int, default=0, help="also save the weights every N steps (snapshots)")
    parser.add_argument("--log", default=None, help="write the run stats (JSON) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = Recipe(epochs=args.epochs, batch_images=args.batch_images, lr=args.lr, seed=args.seed,
                    max_images=args.max_images, augment=args.augment,
                    vision_pretrain_epochs=args.vision_pretrain_epochs, vision_batch_images=args.vision_batch_images,
                    data=args.data, max_questions=args.max_questions, freeze_vision=args.freeze_vision,
                    balance_types=args.balance_types, dense_positive_weight=args.dense_positive_weight,
                    vision_lr=args.vision_lr, warmup_fraction=args.warmup_fraction,
                    torch_text_init=args.torch_text_init, train_projector=args.train_projector)
    sizes = TinySizes(**dict(parse_size(item) for item in args.size))
    stats = train(args.family, args.out_dir, recipe, sizes, init_from=args.init_from,
                  init_vision_from=args.init_vision_from, save_every=args.save_every)
    print(json.dumps({k: v for k, v in stats.items() if k != "log"}))
    if args.log:
        Path(args.log).write_text(json.dumps(stats, indent=1) + "\n")


if __name__ == "__main__":
    main()
