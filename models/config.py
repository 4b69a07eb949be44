"""Model configs: `config.json` (either layout seen in the wild) -> frozen dataclasses.

Two layouts exist: the flat transformers-4 one published on the Hub (Qwen2-VL
keeps text fields and `rope_scaling: {type: mrope, ...}` at top level) and the
nested transformers-5 one (`text_config`, `rope_parameters`). Rather than keep
our own table of every family's defaults, the raw dict goes through the
installed transformers config class, which already reads both layouts and
fills the defaults Hub configs leave out; we then copy the fields that change
the forward into a frozen dataclass (hashable, so it can be a static jit arg).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

TEXT_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
MULTIMODAL_MODEL_TYPES = ("llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")
SUPPORTED_MODEL_TYPES = TEXT_MODEL_TYPES + MULTIMODAL_MODEL_TYPES
ROPE_KINDS = ("default", "llama3", "mrope", "mrope_interleaved")

# Text families that put a bias on q/k/v unconditionally (Qwen2 and its VL variants).
_QKV_BIAS_FAMILIES = ("qwen2", "qwen2_vl", "qwen2_5_vl")
_QK_NORM_FAMILIES = ("qwen3", "qwen3_vl")
_DEFAULT_MROPE_SECTION = {"qwen2_vl": (16, 24, 24), "qwen2_5_vl": (16, 24, 24), "qwen3_vl": (24, 20, 20)}


MAX_LAYERS = 1024  # far above any published model: a larger count is a typo, not a model to build


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The language model's forward-relevant fields (one decoder serves all families)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_kind: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position: int = 8192
    mrope_section: tuple[int, ...] = ()
    qkv_bias: bool = False  # bias on q/k/v projections
    o_bias: bool = False  # bias on the output projection (Llama/Qwen3 `attention_bias`)
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings"):
            value, least = getattr(self, name), 0 if name == "num_hidden_layers" else 1  # 0 layers: embed + head
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name}={value!r} must be an integer >= {least}")
        if self.num_hidden_layers > MAX_LAYERS:
            raise ValueError(f"num_hidden_layers={self.num_hidden_layers} is implausible (more than {MAX_LAYERS})")
        if not isinstance(self.rope_theta, (int, float)) or not self.rope_theta > 0:
            raise ValueError(f"rope_theta={self.rope_theta!r} must be a positive number")
        if self.rope_kind not in ROPE_KINDS:
            raise ValueError(f"rope_kind {self.rope_kind!r}: expected one of {ROPE_KINDS}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.rope_kind == "mrope" and sum(self.mrope_section) != self.head_dim // 2:
            # HF splits the head_dim/2 frequencies by these sizes (torch.split), which fails on any other sum.
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {self.head_dim // 2} "
                             f"(HF's Qwen2/2.5-VL rotary embedding fails on any other sum too)")
        if self.rope_kind == "mrope_interleaved" and len(self.mrope_section) < 3:
            raise ValueError(f"mrope_section {self.mrope_section} needs (t, h, w) sizes: HF's interleaved M-RoPE "
                             f"reads its entries 1 and 2")

    @property
    def uses_mrope(self) -> bool:
        return self.rope_kind.startswith("mrope")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A whole checkpoint: text decoder + (for multimodal models) the vision side and token ids."""

    model_type: str
    text: TextConfig
    vision: Any = None  # models.vision_config dataclass for multimodal model types
    image_token_id: int | None = None
    video_token_id: int | None = None
    vision_start_token_id: int | None = None
    vision_end_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None

    @property
    def is_multimodal(self) -> bool:
        return self.model_type in MULTIMODAL_MODEL_TYPES


def _check_model_type(model_type: Any, where: str) -> str:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{where}: unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


def _read_raw(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict, str]:
    if isinstance(source, Mapping):
        return dict(source), "config dict"
    path = Path(source)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no config.json")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: must hold a JSON object of the model's settings, got a JSON "
                         f"{type(raw).__name__}")
    return raw, str(file)


def _hf_config(raw: dict, where: str):
    """The installed transformers config class reads both layouts and fills defaults."""
    from transformers import CONFIG_MAPPING

    fields = {k: v for k, v in raw.items() if k not in ("model_type", "transformers_version", "architectures")}
    try:
        return CONFIG_MAPPING[raw["model_type"]](**fields)
    except Exception as err:  # transformers' field validation raises its own types: name the file instead
        raise ValueError(f"{where}: cannot parse config ({type(err).__name__}: {err})") from None


def _as_tuple(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def _mrope_section(model_type: str, kind: str, rope: dict, head_dim: int) -> tuple[int, ...]:
    """The M-RoPE section sizes as given; for Qwen3-VL's interleaved layout a warning when HF does not
    use them as written, naming what it uses instead.

    HF (`Qwen3VLTextRotaryEmbedding.recomposition_frequencies`) writes axis h at frequencies
    1, 4, ... below 3 * section[1] and axis w at 2, 5, ... below 3 * section[2], slices that stop at
    head_dim/2 by themselves; every other frequency keeps axis t, so section[0] (and any entry past
    the third) is never read. Sizes that do not fit are clamped this way without a word (its model
    tester has head_dim 8 with sections (16, 8, 8)); `models.rope.frequency_axes` does the same.
    """
    section = _as_tuple(rope.get("mrope_section", _DEFAULT_MROPE_SECTION.get(model_type)))
    half = head_dim // 2
    if kind == "mrope_interleaved" and len(section) >= 3:
        h, w = len(range(half)[1 : 3 * section[1] : 3]), len(range(half)[2 : 3 * section[2] : 3])
        used = (half - h - w, h, w)
        if used != section:
            warnings.warn(
                f"{model_type}: mrope_section {list(section)} does not fit the {half} rotary frequencies "
                f"(head_dim/2) of the interleaved M-RoPE; as HF transformers does, it is clamped: the (t, h, w) "
                f"axes drive {list(used)} frequencies",
                UserWarning,
                stacklevel=4,
            )
    return section


def _text_config(model_type: str, hf, raw: dict) -> TextConfig:
    text = hf.get_text_config()
    rope = dict(getattr(text, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    if model_type == "qwen3_vl":
        kind = "mrope_interleaved"  # Qwen3-VL always interleaves, whatever rope_scaling says
    elif model_type in _DEFAULT_MROPE_SECTION:
        kind = "mrope"
    elif rope_type in ("default", "llama3"):
        kind = rope_type
    else:
        raise ValueError(f"{model_type}: rope type {rope_type!r} is not supported (default, llama3, mrope)")
    attention_bias = bool(getattr(text, "attention_bias", False))
    family_qkv_bias = model_type in _QKV_BIAS_FAMILIES
    tie = raw.get("tie_word_embeddings", getattr(text, "tie_word_embeddings", False))
    return TextConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        rms_norm_eps=float(text.rms_norm_eps),
        rope_theta=float(rope.get("rope_theta", getattr(text, "rope_theta", 10000.0))),
        rope_kind=kind,
        rope_factor=float(rope.get("factor", 1.0)),
        rope_low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
        rope_high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
        rope_original_max_position=int(rope.get("original_max_position_embeddings", 8192)),
        mrope_section=_mrope_section(model_type, kind, rope, head_dim),
        qkv_bias=family_qkv_bias or attention_bias,
        o_bias=attention_bias and not family_qkv_bias,
        mlp_bias=bool(getattr(text, "mlp_bias", False)),
        qk_norm=model_type in _QK_NORM_FAMILIES,
        tie_word_embeddings=bool(tie),
        hidden_act=getattr(text, "hidden_act", "silu"),
        max_position_embeddings=int(getattr(text, "max_position_embeddings", 4096)),
    )


def _token_id(hf, *names: str) -> int | None:
    for name in names:
        value = getattr(hf, name, None)
        if value is not None:
            return int(value)
    return None


def load_config(source: str | os.PathLike | Mapping[str, Any]) -> ModelConfig:
    """A folder (or config.json path, or a raw dict) -> ModelConfig; both layouts.

    Any inconsistency found while parsing is a ValueError that names the file (or "config dict")."""
    raw, where = _read_raw(source)
    try:
        return _parse(raw, where)
    except (ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as err:
        message = str(err)
        if where in message:
            raise
        raise ValueError(f"{where}: {message} (model_type {raw.get('model_type')!r})") from None


def _parse(raw: dict, where: str) -> ModelConfig:
    model_type = _check_model_type(raw.get("model_type"), where)
    hf = _hf_config(raw, where)
    vision = None
    if model_type in MULTIMODAL_MODEL_TYPES:
        from models.vision_config import parse_vision_config

        # The vision config with transformers' defaults filled in (Hub configs list only what differs).
        vision = parse_vision_config(model_type, dict(raw, vision_config=hf.vision_config.to_dict()))
    text_hf = hf.get_text_config()
    eos = getattr(text_hf, "eos_token_id", None)
    if eos is None:
        eos = getattr(hf, "eos_token_id", None)
    return ModelConfig(
        model_type=model_type,
        text=_text_config(model_type, hf, raw),
        vision=vision,
        image_token_id=_token_id(hf, "image_token_id", "image_token_index"),
        video_token_id=_token_id(hf, "video_token_id", "video_token_index"),
        vision_start_token_id=_token_id(hf, "vision_start_token_id"),
        vision_end_token_id=_token_id(hf, "vision_end_token_id"),
        eos_token_id=_as_tuple(eos),
        pad_token_id=_token_id(text_hf, "pad_token_id"),
    )
