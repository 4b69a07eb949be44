"""Stage 1 of the recipe: teach the vision tower (+ projector) easy-VQA's shapes and colours first.

Trained end to end through the language model alone, the tiny towers learn
colour (a global average) but stay near chance on shape. Linear shape and
colour heads on mean-pooled image features do learn both, given three things we
measured on 800 held-out test images (10 epochs of the probe take ~1.5 min on one core):

- a constant learning rate after warm-up (cosine decay over a few epochs stops
  shape at ~50%: it is learned late, after a plateau);
- the colour head kept: with shape alone the towers drop colour, and stage 2
  never recovers it (colour questions at chance, 13%, after 4 epochs);
- for LLaVA-NeXT, the base crop only: mean-pooling the 2x2 tiles as well mixes
  in features of partial views that carry no shape, and learning stalls;
- PyTorch's default init of the vision Linear/Conv layers (`reset_vision_init`):
  HF's small-std init (0.02) left the Qwen2-VL tower at ~50% after 4 epochs,
  the default one reached 94%.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from jax_pruning.eval.detail_vqa import DIGITS

SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
IGNORE = -100


def image_labels(sample) -> tuple[int, int]:
    """(shape index, colour index) of one ImageQuestions, IGNORE where no answer says it."""
    shape = colour = IGNORE
    for question, answer in zip(sample.questions, sample.answers):
        if answer in SHAPES:
            shape = SHAPES.index(answer)
        elif answer in COLOURS and "color" in question:
            colour = COLOURS.index(answer)
    return shape, colour


def vision_modules(model, family: str) -> list[torch.nn.Module]:
    inner = model.model
    return [inner.vision_tower, inner.multi_modal_projector] if family == "llava_next" else [inner.visual]


def reset_vision_init(model, family: str) -> None:
    """PyTorch default init for every Linear / Conv of the image-feature path (see the module docstring)."""
    for module in vision_modules(model, family):
        for sub in module.modules():
            if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d)):
                sub.reset_parameters()


def pooled_image_features(model, family: str, inputs: dict) -> torch.Tensor:
    """[num_images, D]: mean projected visual token (LLaVA-NeXT: of the base crop; Qwen2-VL: of the image)."""
    inner = model.model
    if family == "llava_next":
        base = inputs["pixel_values"][:, 0]  # [B, 3, H, W]: crop 0 is the whole image resized
        hidden = inner.vision_tower(pixel_values=base, output_hidden_states=True).hidden_states[-1][:, 1:]
        return inner.multi_modal_projector(hidden).mean(1)  # CLS dropped, as the "default" strategy does
    out = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    return torch.stack([f.mean(0) for f in out.pooler_output])


def pretrain_vision(model, family: str, processor, samples, epochs: int, batch_images: int, lr: float,
                    rng: np.random.Generator, load_image, to_model_inputs, log=print,
                    warmup_steps: int = 50) -> list[dict]:
    """Fit the image-feature path on shape + colour classification. -> per-epoch log (training accuracies)."""
    width = model.config.text_config.hidden_size
    heads = torch.nn.ModuleDict({"shape": torch.nn.Linear(width, len(SHAPES)),
                                 "colour": torch.nn.Linear(width, len(COLOURS))})
    params = [p for m in vision_modules(model, family) for p in m.parameters()] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    labels = torch.tensor([image_labels(s) for s in samples])  # [N, 2]
    prompt = processor.chat_prompt("x")
    history, step = [], 0
    for epoch in range(epochs):
        order, losses = rng.permutation(len(samples)), []
        hits, seen = np.zeros(2, int), np.zeros(2, int)  # shape, colour
        for first in range(0, len(samples), batch_images):
            idx = order[first:first + batch_images]
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps)
            step += 1
            batch = processor([load_image(samples[i].path) for i in idx], [prompt] * len(idx))
            pooled = pooled_image_features(model, family, to_model_inputs(batch, family))  # [B, D]
            target = labels[idx]  # [B, 2]
            logits = [heads["shape"](pooled), heads["colour"](pooled)]
            loss = sum(torch.nn.functional.cross_entropy(x, target[:, j], ignore_index=IGNORE)
                       for j, x in enumerate(logits))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            for j, x in enumerate(logits):
                known = target[:, j] != IGNORE
                hits[j] += int((x.argmax(-1)[known] == target[known, j]).sum())
                seen[j] += int(known.sum())
            losses.append(loss.item())
        entry = dict(vision_epoch=epoch + 1, loss=round(float(np.mean(losses)), 4),
                     shape_accuracy=round(hits[0] / max(1, seen[0]), 4),
                     colour_accuracy=round(hits[1] / max(1, seen[1]), 4))
        history.append(entry)
        log(entry)
    return history


# ---- detail-VQA: dense (per visual token) stage 1 ------------------------------------------------------------
#
# detail-VQA answers depend on small objects, so a pooled image label says little. Instead every projected visual
# token the LLM will see is classified against the scene description, over the image area that token covers:
# - shape, colour: of the object covering most of its pixels (or none);
# - centre_shape, centre_colour: of the object whose centre lies in it (one token per object: what counting needs);
# - digit_1 .. digit_<DIGITS>: the k-th digit of the number if that glyph's centre lies in it (a 16 px token can
#   hold parts of two glyphs, so each position has its own head).
# - pos_x, pos_y (LLaVA-NeXT base crop only): the token's own column and row. CLIP's learned position embeddings
#   can carry them, so every base token states where it is (what "top left" and "further left" need when the
#   question sits anywhere in a multi-turn chat). Tile tokens cannot know their tile and Qwen2-VL's tower has
#   only relative (rotary) positions, so neither is asked; Qwen2-VL's LLM reads positions from its M-RoPE.
# Every label is local (a token's own area and the glyphs next to it), so the answers stay in the tokens that
# show them: nothing global (a count, the whole number) is taught to every token.

DIGIT_HEADS = tuple(f"digit_{k + 1}" for k in range(DIGITS))
DENSE_HEADS = {"shape": 4, "colour": 6, "centre_shape": 4, "centre_colour": 6,
               **{k: 11 for k in DIGIT_HEADS}, "pos_x": 8, "pos_y": 8}
POSITION_HEADS = ("pos_x", "pos_y")  # LLaVA-NeXT only (labels: the base crop's 8x8 token grid)


def dense_heads(family: str) -> dict[str, int]:
    """The stage-1 heads of a family (Qwen2-VL has no position heads)."""
    return {k: n for k, n in DENSE_HEADS.items() if family == "llava_next" or k not in POSITION_HEADS}
# loss weight of a token whose label is not none, per head (none weighs 1): the centre and digit heads have one
# labelled token per object / glyph among 64-320, and without it they drift to "none" everywhere first
POSITIVE_WEIGHT = {"shape": 1.0, "colour": 1.0, "centre_shape": 1.0, "centre_colour": 1.0,
                   **{k: 1.0 for k in DIGIT_HEADS}}


def token_regions(family: str, side: int) -> list[list[tuple[int, int, int, int]]]:
    """Per crop (LLaVA: base then the 2x2 tiles; Qwen2-VL: the image), the (x0, y0, x1, y1) px of each projected
    token in the order the tower emits them (row-major)."""
    if family == "llava_next":
        crops = [(0, 0, side)] + [(c * side // 2, r * side // 2, side // 2) for r in range(2) for c in range(2)]
        per = 8  # tokens per crop side (crop / patch)
    else:
        crops, per = [(0, 0, side)], side // 16  # Qwen2-VL: patch 8, merge 2 -> 16 px per token
    out = []
    for x0, y0, extent in crops:
        step = extent // per
        out.append([(x0 + c * step, y0 + r * step, x0 + (c + 1) * step, y0 + (r + 1) * step)
                    for r in range(per) for c in range(per)])
    return out


def dense_labels(scene, regions) -> np.ndarray:
    """[tokens, len(DENSE_HEADS)] int labels of one scene over flattened `regions` (0 = none in every head;
    the position heads are filled in by `pretrain_vision_dense`)."""
    from jax_pruning.eval import detail_vqa as dv

    owner = np.full((dv.CANVAS, dv.CANVAS), -1)
    for k, obj in enumerate(scene.objects):
        owner[obj.y:obj.y + obj.size, obj.x:obj.x + obj.size][dv._shape_mask(obj)] = k
    d = scene.digits
    glyph_centres = [(d.x + k * (dv.GLYPH_W + dv.GLYPH_GAP) + dv.GLYPH_W / 2, d.y + dv.GLYPH_H / 2, int(ch))
                     for k, ch in enumerate(d.text)]
    colours = list(dv.COLORS)

    def shape_colour(obj) -> tuple[int, int]:
        return dv.SHAPES.index(obj.shape) + 1, colours.index(obj.color) + 1

    rows = []
    for x0, y0, x1, y1 in regions:
        ids, counts = np.unique(owner[y0:y1, x0:x1], return_counts=True)
        counts[ids < 0] = 0
        covering = shape_colour(scene.objects[int(ids[counts.argmax()])]) if counts.max() > 0 else (0, 0)
        centred = [o for o in scene.objects if x0 <= o.center[0] < x1 and y0 <= o.center[1] < y1]
        centre = shape_colour(centred[0]) if centred else (0, 0)
        digits = [value + 1 if (x0 <= gx < x1 and y0 <= gy < y1) else 0 for gx, gy, value in glyph_centres]
        rows.append((*covering, *centre, *digits, IGNORE, IGNORE))
    return np.asarray(rows, np.int64)


def dense_token_features(model, family: str, inputs: dict) -> torch.Tensor:
    """[B, tokens, D]: the projected visual tokens (LLaVA: base then tiles, CLS dropped; Qwen2-VL: merged)."""
    inner = model.model
    if family == "llava_next":
        pixels = inputs["pixel_values"]  # [B, 5, 3, H, W]
        b, crops = pixels.shape[:2]
        hidden = inner.vision_tower(pixel_values=pixels.flatten(0, 1), output_hidden_states=True).hidden_states[-1]
        projected = inner.multi_modal_projector(hidden[:, 1:])  # [B * crops, P, D]
        return projected.reshape(b, crops * projected.shape[1], projected.shape[2])
    out = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    return torch.stack(list(out.pooler_output))


def pretrain_vision_dense(model, family: str, processor, samples, epochs: int, batch_images: int, lr: float,
                          rng: np.random.Generator, load_image, to_model_inputs, log=print,
                          warmup_steps: int = 50, positive_weight: dict | None = None) -> list[dict]:
    """Stage 1 for detail-VQA: per-token heads (DENSE_HEADS) on the projected visual tokens. -> per-epoch log
    (token accuracies on the tokens whose label is not none, and the none-vs-some accuracy of each head)."""
    from benchmarks.tiny_models.data import scene_of_path
    from jax_pruning.eval import detail_vqa as dv

    width = model.config.text_config.hidden_size
    positive_weight = POSITIVE_WEIGHT if positive_weight is None else positive_weight
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, n) for k, n in dense_heads(family).items()})
    params = [p for m in vision_modules(model, family) for p in m.parameters()] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    crops = token_regions(family, dv.CANVAS)
    regions = [r for crop in crops for r in crop]
    labels = torch.as_tensor(np.stack([dense_labels(scene_of_path(s.path), regions) for s in samples]))  # [N, T, H]
    if family == "llava_next":  # the base crop shows the digits at half size (3.5 x 6.5 px): not asked there
        digit_heads = [j for j, k in enumerate(DENSE_HEADS) if k.startswith("digit")]
        labels[:, :len(crops[0]), digit_heads] = IGNORE
        side = int(round(len(crops[0]) ** 0.5))
        index = torch.arange(len(crops[0]))
        labels[:, :len(crops[0]), list(DENSE_HEADS).index("pos_x")] = index % side
        labels[:, :len(crops[0]), list(DENSE_HEADS).index("pos_y")] = index // side
    heads_of = dense_heads(family)
    labels = labels[..., [list(DENSE_HEADS).index(k) for k in heads_of]]
    prompt = processor.chat_prompt("x")
    history, step, cpu_start = [], 0, time.process_time()
    for epoch in range(epochs):
        order, losses = rng.permutation(len(samples)), []
        hits, seen = np.zeros(len(heads), int), np.zeros(len(heads), int)
        for first in range(0, len(samples), batch_images):
            idx = order[first:first + batch_images]
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps)
            step += 1
            batch = processor([load_image(samples[i].path) for i in idx], [prompt] * len(idx))
            tokens = dense_token_features(model, family, to_model_inputs(batch, family))  # [B, T, D]
            target = labels[idx]  # [B, T, H]
            loss = 0.0
            for j, (name, head) in enumerate(heads.items()):
                logits = head(tokens)
                weight = torch.full((DENSE_HEADS[name],), positive_weight.get(name, 1.0))
                weight[0] = 1.0
                loss = loss + torch.nn.functional.cross_entropy(logits.flatten(0, 1), target[..., j].flatten(),
                                                                weight=weight, ignore_index=IGNORE)
                some = target[..., j] >= (0 if name in POSITION_HEADS else 1)  # position 0 is a real label
                hits[j] += int((logits.argmax(-1)[some] == target[..., j][some]).sum())
                seen[j] += int(some.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
        entry = dict(vision_epoch=epoch + 1, loss=round(float(np.mean(losses)), 4),
                     **{f"{k}_accuracy": round(hits[j] / max(1, seen[j]), 4) for j, k in enumerate(heads)},
                     cpu_s=round(time.process_time() - cpu_start, 1))
        history.append(entry)
        log(entry)
    return history
