"""What the Qwen-VL processor does, without the processor class.

The HF `Qwen2VLProcessor` / `Qwen2_5_VLProcessor` / `Qwen3VLProcessor` cannot
be built here (their video half needs torchvision), so this one helper does
their image path: run the HF image processor (PIL variant), expand each
`<|image_pad|>` into prod(grid_thw) // merge**2 copies, tokenize, and build
`mm_token_type_ids` (0 text, 1 image, 2 video).

Videos (`videos=`, each a list of already sampled frames) follow HF's video
processors (transformers 5, `video_processing_qwen2_vl.py` for Qwen2-VL and
Qwen2.5-VL, `video_processing_qwen3_vl.py` for Qwen3-VL) without torchvision:
every frame of a video is resized to one size by the family's smart_resize
rule (Qwen3-VL's counts the frames against max_pixels), rescaled by 1/255 and
normalised with the image processor's mean/std, the frame count is padded to a
multiple of temporal_patch_size by repeating the last frame, and the patches
are flattened in HF's order (t, h/m, w/m, m, m, C, temporal, P, P) into
`pixel_values_videos` [patches, C*T*P*P] with `video_grid_thw` [videos, 3].
Each `<|video_pad|>` of the text is expanded as the family's processor does:
prod(grid) // merge**2 copies (Qwen2-VL, Qwen2.5-VL, which also returns
`second_per_grid_ts` = temporal_patch_size / fps per video), or Qwen3-VL's
per-temporal-patch chunks `<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>`
with t the mean timestamp of the patch's first and last frame.
Differences from HF: frames are resized with PIL bicubic (HF: torchvision
bicubic with antialias on tensors, so pixels may differ by rounding), the
per-frame pixel cap (`cap_pixels_per_frame`, off by default in transformers
5) is not applied, and no frames are sampled (give the frames to use and
their rate `video_fps`; frame i is at i / fps seconds).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from models.mrope_index import mm_token_type_ids_from

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
VIDEO_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _flatten_images(images, num_texts: int) -> tuple[list, list[int]]:
    """Accept a flat list (in text order) or one list per text; return (flat, images_per_text)."""
    if images is None:
        return [], [0] * num_texts
    if images and all(isinstance(x, (list, tuple)) for x in images):
        if len(images) != num_texts:
            raise ValueError(f"got image lists for {len(images)} texts but {num_texts} texts")
        return [im for group in images for im in group], [len(group) for group in images]
    return list(images), []


def _flatten_videos(videos, num_texts: int) -> tuple[list, list[int]]:
    """Videos are lists of frames, so a list per text is a list of lists of videos: one level deeper."""
    if videos is None:
        return [], [0] * num_texts
    per_text = bool(videos) and all(  # a group of videos, not a video's frames (PIL or [H, W, C] arrays)
        isinstance(group, (list, tuple)) and all(isinstance(v, (list, tuple)) or _is_frame_stack(v) for v in group)
        for group in videos)
    if not per_text:
        return list(videos), []
    if len(videos) != num_texts:
        raise ValueError(f"got video lists for {len(videos)} texts but {num_texts} texts")
    return [v for group in videos for v in group], [len(group) for group in videos]


def _is_frame_stack(x) -> bool:
    return getattr(x, "ndim", 0) == 4  # one array [frames, H, W, C]


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """HF's Qwen2-VL rule (image processors, Qwen2-VL / Qwen2.5-VL video processor): (height, width)
    multiples of `factor`, total pixels within [min_pixels, max_pixels], aspect ratio kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got "
                         f"{max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_resize_qwen3_video(num_frames: int, height: int, width: int, temporal_factor: int, factor: int,
                             min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """HF's Qwen3-VL video rule: like `smart_resize`, but the pixel budget counts the frames
    (rounded to a multiple of temporal_factor), and frames smaller than `factor` are scaled up first."""
    if num_frames < temporal_factor:
        raise ValueError(f"t:{num_frames} must be larger than temporal_factor:{temporal_factor}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got "
                         f"{max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _frames_rgb(video, index: int) -> list[np.ndarray]:
    """One video -> its frames as uint8 [H, W, 3] arrays, all of one size."""
    from PIL import Image

    frames = list(video) if not _is_frame_stack(video) else [video[i] for i in range(video.shape[0])]
    if not frames:
        raise ValueError(f"video {index} has no frames")
    out = []
    for j, frame in enumerate(frames):
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)
        if frame.ndim != 3 or frame.shape[-1] not in (3, 4) or frame.dtype != np.uint8:
            raise ValueError(f"video {index}, frame {j}: expected a PIL image or a uint8 array [H, W, 3], "
                             f"got {frame.dtype} of shape {frame.shape}")
        out.append(frame[..., :3])
    if len({f.shape for f in out}) != 1:
        raise ValueError(f"video {index}: frames of different sizes {sorted({f.shape[:2] for f in out})}")
    return out


def video_patches(
    videos: Sequence,
    *,
    family: str,
    patch_size: int,
    temporal_patch_size: int,
    merge_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Videos (each a list of PIL frames / uint8 [H, W, 3] arrays, or one [F, H, W, 3] array) ->
    (pixel_values_videos [patches, C*T*P*P] float32, video_grid_thw [videos, 3] int64), as HF's video
    processor of `family` (see the module docstring). min/max_pixels default to the family's video
    processor: 128 and 768 times (patch_size * merge_size)**2."""
    from PIL import Image

    if family not in VIDEO_FAMILIES:
        raise ValueError(f"family must be one of {VIDEO_FAMILIES}, got {family!r}")
    factor = patch_size * merge_size
    min_pixels = 128 * factor * factor if min_pixels is None else int(min_pixels)
    max_pixels = 768 * factor * factor if max_pixels is None else int(max_pixels)
    mean = np.asarray(image_mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(image_std, np.float32).reshape(3, 1, 1)
    patches, grids = [], []
    for i, video in enumerate(videos):
        frames = _frames_rgb(video, i)
        height, width = frames[0].shape[:2]
        if family == "qwen3_vl":
            size = smart_resize_qwen3_video(len(frames), height, width, temporal_patch_size, factor, min_pixels,
                                            max_pixels)
        else:
            size = smart_resize(height, width, factor, min_pixels, max_pixels)
        h, w = size
        if (h, w) != (height, width):
            frames = [np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames]
        clip = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1 / 255)  # [F, C, H, W]
        flat, grid = patchify_video((clip - mean) / std, patch_size, temporal_patch_size, merge_size)
        patches.append(flat)
        grids.append(grid)
    return np.concatenate(patches).astype(np.float32), np.asarray(grids, np.int64).reshape(-1, 3)


def patchify_video(clip: np.ndarray, patch_size: int, temporal_patch_size: int, merge_size: int):
    """One normalised video [F, C, H, W] -> (patches [t*h*w, C*T*P*P], (t, h, w)), HF's `patchify`: the
    frame count padded to a multiple of temporal_patch_size with the last frame, then the patches in
    (t, h/m, w/m, m, m) order, each flattened as (C, temporal, P, P)."""
    if pad := -len(clip) % temporal_patch_size:
        clip = np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])
    frames, channels, height, width = clip.shape
    gt, gh, gw = frames // temporal_patch_size, height // patch_size, width // patch_size
    m, p = merge_size, patch_size
    x = clip.reshape(gt, temporal_patch_size, channels, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, h/m, w/m, m, m, C, temporal, P, P)
    return x.reshape(gt * gh * gw, channels * temporal_patch_size * p * p), (gt, gh, gw)


def qwen3_timestamps(num_frames: int, fps: float, temporal_patch_size: int) -> list[float]:
    """HF Qwen3VLProcessor._calculate_timestamps for frames 0..num_frames-1 at `fps`: one per temporal
    patch, the mean of its first and last frame's time (the frame list padded with its last frame)."""
    indices = list(range(num_frames))
    if len(indices) % temporal_patch_size:
        indices += [indices[-1]] * (temporal_patch_size - len(indices) % temporal_patch_size)
    times = [i / fps for i in indices]
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


def expand_video_tokens(text: str, grids: Sequence, merge_size: int, *, family: str,
                        timestamps: Optional[Sequence[Sequence[float]]] = None) -> str:
    """Replace the i-th `<|video_pad|>` of `text` as the family's processor does: prod(grids[i]) //
    merge**2 copies, or for Qwen3-VL one `<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>`
    chunk per temporal patch (timestamps[i]: one time per temporal patch)."""
    parts = text.split(VIDEO_PAD)
    if len(parts) - 1 != len(grids):
        raise ValueError(f"text has {len(parts) - 1} {VIDEO_PAD} placeholders but {len(grids)} videos were given")
    out = [parts[0]]
    for i, (grid, rest) in enumerate(zip(grids, parts[1:])):
        t, h, w = (int(v) for v in grid)
        if family == "qwen3_vl":
            if timestamps is None or len(timestamps[i]) != t:
                raise ValueError(f"video {i}: Qwen3-VL needs one timestamp per temporal patch ({t})")
            per_frame = h * w // merge_size**2
            out.append("".join(f"<{timestamps[i][k]:.1f} seconds>{VISION_START}{VIDEO_PAD * per_frame}{VISION_END}"
                               for k in range(t)) + rest)
        else:
            out.append(VIDEO_PAD * (t * h * w // merge_size**2) + rest)
    return "".join(out)


def expand_image_tokens(text: str, grids: Sequence, merge_size: int, image_token: str = IMAGE_PAD) -> str:
    """Replace the i-th `image_token` of `text` by prod(grids[i]) // merge**2 copies."""
    parts = text.split(image_token)
    if len(parts) - 1 != len(grids):
        raise ValueError(f"text has {len(parts) - 1} {image_token} placeholders but {len(grids)} images were given")
    out = [parts[0]]
    for grid, rest in zip(grids, parts[1:]):
        out.append(image_token * (int(np.prod(grid)) // merge_size**2) + rest)
    return "".join(out)


def prepare_qwen_inputs(
    texts: Sequence[str] | str,
    images=None,
    videos=None,
    *,
    tokenizer,
    image_processor,
    family: Optional[str] = None,
    video_fps: float | Sequence[float] = 2.0,
    video_min_pixels: Optional[int] = None,
    video_max_pixels: Optional[int] = None,
    image_token: str = IMAGE_PAD,
    padding_side: Optional[str] = "left",
) -> dict:
    """Texts with one `<|image_pad|>` per image and one `<|video_pad|>` per video -> model inputs as NumPy.

    Returns input_ids / attention_mask / mm_token_type_ids [B, T], and when images are given
    pixel_values [num_patches, C*T*P*P], image_grid_thw [num_images, 3], images_per_sample [B].
    videos: each a list of frames (PIL or uint8 [H, W, 3]) or one [F, H, W, 3] array, flat in text order
    or one list per text; needs `family` (qwen2_vl, qwen2_5_vl, qwen3_vl) and gives
    pixel_values_videos, video_grid_thw (and second_per_grid_ts [videos] float32 for Qwen2.5-VL), see the
    module docstring. video_fps: the rate of the given frames (one number, or one per video);
    video_min/max_pixels: the video processor's size (default: the family's). Left padding by default
    (what batched generation needs).
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    flat, per_text = _flatten_images(images, len(texts))
    counts = [t.count(image_token) for t in texts]
    if per_text and per_text != counts:
        raise ValueError(f"images per text {per_text} do not match the {image_token} counts {counts}")
    if sum(counts) != len(flat):
        raise ValueError(f"texts hold {sum(counts)} {image_token} placeholders but {len(flat)} images were given")
    flat_videos, videos_per_text = _flatten_videos(videos, len(texts))
    video_counts = [t.count(VIDEO_PAD) for t in texts]
    if videos_per_text and videos_per_text != video_counts:
        raise ValueError(f"videos per text {videos_per_text} do not match the {VIDEO_PAD} counts {video_counts}")
    if sum(video_counts) != len(flat_videos):
        raise ValueError(f"texts hold {sum(video_counts)} {VIDEO_PAD} placeholders but {len(flat_videos)} videos "
                         f"were given")
    result = {}
    grids = np.zeros((0, 3), np.int64)
    if flat:
        for i, image in enumerate(flat):
            size = getattr(image, "size", None)  # PIL (width, height); arrays have an int .size: not checked here
            if isinstance(size, tuple) and len(size) == 2 and min(size) > 0 and max(size) / min(size) > 200:
                raise ValueError(f"image {i} is {size[0]}x{size[1]} pixels: Qwen-VL's processor refuses aspect "
                                 f"ratios above 200 (pad or crop it)")
        processed = image_processor(flat, return_tensors="np")
        grids = np.asarray(processed["image_grid_thw"])
        result["pixel_values"] = np.asarray(processed["pixel_values"], np.float32)
        result["image_grid_thw"] = grids
        result["images_per_sample"] = np.asarray(counts, np.int32)
    merge = int(image_processor.merge_size)
    starts = np.cumsum([0] + counts)
    expanded = [expand_image_tokens(t, grids[s:e], merge, image_token) for t, s, e in zip(texts, starts, starts[1:])]
    if flat_videos:
        if family not in VIDEO_FAMILIES:
            raise ValueError(f"videos need family= one of {VIDEO_FAMILIES} (the expansion and resize rules differ), "
                             f"got {family!r}")
        tps = int(image_processor.temporal_patch_size)
        fps = [float(f) for f in np.broadcast_to(np.asarray(video_fps, np.float64), (len(flat_videos),))]
        if min(fps) <= 0:
            raise ValueError(f"video_fps must be positive, got {video_fps}")
        pixels, video_grids = video_patches(
            flat_videos, family=family, patch_size=int(image_processor.patch_size), temporal_patch_size=tps,
            merge_size=merge, image_mean=image_processor.image_mean, image_std=image_processor.image_std,
            min_pixels=video_min_pixels, max_pixels=video_max_pixels,
        )
        result["pixel_values_videos"], result["video_grid_thw"] = pixels, video_grids
        if family == "qwen2_5_vl":
            result["second_per_grid_ts"] = np.asarray([tps / f for f in fps], np.float32)
        stamps = None
        if family == "qwen3_vl":
            frames = [len(v) if not _is_frame_stack(v) else v.shape[0] for v in flat_videos]
            stamps = [qwen3_timestamps(n, f, tps) for n, f in zip(frames, fps)]
        vstarts = np.cumsum([0] + video_counts)
        expanded = [expand_video_tokens(t, video_grids[s:e], merge, family=family,
                                        timestamps=None if stamps is None else stamps[s:e])
                    for t, s, e in zip(expanded, vstarts, vstarts[1:])]
    kwargs = {} if padding_side is None else {"padding_side": padding_side}
    tokens = tokenizer(expanded, padding=True, return_tensors="np", **kwargs)
    vocab = tokenizer.get_vocab()
    if image_token not in vocab:
        raise ValueError(f"tokenizer has no {image_token} token")
    if flat_videos and VIDEO_PAD not in vocab:
        raise ValueError(f"tokenizer has no {VIDEO_PAD} token")
    result["input_ids"] = np.asarray(tokens["input_ids"])
    result["attention_mask"] = np.asarray(tokens["attention_mask"])
    result["mm_token_type_ids"] = mm_token_type_ids_from(result["input_ids"], vocab[image_token], vocab.get(VIDEO_PAD))
    return result


def prepare_qwen_video_inputs(texts: Sequence[str] | str, videos, images=None, *, family: str, **kwargs) -> dict:
    """`prepare_qwen_inputs` with videos first: texts with `<|video_pad|>` (and `<|image_pad|>`) placeholders,
    videos as lists of frames -> pixel_values_videos, video_grid_thw (second_per_grid_ts for Qwen2.5-VL),
    input_ids, ... as the HF processor of `family` returns them."""
    return prepare_qwen_inputs(texts, images, videos, family=family, **kwargs)
