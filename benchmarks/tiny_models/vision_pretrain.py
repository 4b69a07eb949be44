"""Stage 1 of the recipe: teach the vision tower (+ projector) easy-VQA's shape and colour first.

Trained end to end through the language model alone, the tiny towers learn
colour (a global average) but stay at chance on shape; the same CLIP tower with
a linear head on mean-pooled features learns shape to ~94% in 30 s. So we
first fit the image-feature path with two linear heads (shape, colour; labels
read off each image's answers), then train the whole VLM from there.
"""

from __future__ import annotations

import numpy as np
import torch

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


def pooled_image_features(model, family: str, inputs: dict) -> torch.Tensor:
    """[num_images, D] mean of each image's projected visual tokens (what the LLM receives)."""
    inner = model.model
    if family == "llava_next":
        out = inner.get_image_features(inputs["pixel_values"], inputs["image_sizes"], vision_feature_layer=-1,
                                       vision_feature_select_strategy="default")
        per_image = out.pooler_output
        if isinstance(per_image, torch.Tensor):  # packed [sum N_i, D]: equal counts for equal-size images
            per_image = per_image.reshape(len(inputs["image_sizes"]), -1, per_image.shape[-1])
        return torch.stack([f.mean(0) for f in per_image])
    out = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    return torch.stack([f.mean(0) for f in out.pooler_output])


def vision_parameters(model, family: str) -> list[torch.nn.Parameter]:
    inner = model.model
    if family == "llava_next":
        modules = [inner.vision_tower, inner.multi_modal_projector]
        return [p for m in modules for p in m.parameters()] + [inner.image_newline]
    return list(inner.visual.parameters())


def pretrain_vision(model, family: str, processor, samples, epochs: int, batch_images: int, lr: float,
                    rng: np.random.Generator, load_image, to_model_inputs, log=print) -> list[dict]:
    """Fit the image-feature path on shape + colour classification. -> per-epoch log."""
    width = model.config.text_config.hidden_size
    heads = torch.nn.ModuleDict({"shape": torch.nn.Linear(width, len(SHAPES)),
                                 "colour": torch.nn.Linear(width, len(COLOURS))})
    params = vision_parameters(model, family) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    labels = torch.tensor([image_labels(s) for s in samples])  # [N, 2]
    prompt = processor.chat_prompt("x")
    history = []
    for epoch in range(epochs):
        order, losses, hits, seen = rng.permutation(len(samples)), [], 0, 0
        for first in range(0, len(samples), batch_images):
            idx = order[first:first + batch_images]
            batch = processor([load_image(samples[i].path) for i in idx], [prompt] * len(idx))
            pooled = pooled_image_features(model, family, to_model_inputs(batch, family))  # [B, D]
            target = labels[idx]  # [B, 2]
            shape_logits = heads["shape"](pooled)
            loss = (torch.nn.functional.cross_entropy(shape_logits, target[:, 0], ignore_index=IGNORE)
                    + torch.nn.functional.cross_entropy(heads["colour"](pooled), target[:, 1], ignore_index=IGNORE))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            known = target[:, 0] != IGNORE
            hits += int((shape_logits.argmax(-1)[known] == target[known, 0]).sum())
            seen += int(known.sum())
            losses.append(loss.item())
        entry = dict(vision_epoch=epoch + 1, loss=round(float(np.mean(losses)), 4),
                     shape_accuracy=round(hits / max(1, seen), 4))
        history.append(entry)
        log(entry)
    return history
