"""What a pruning method declares about itself, so nothing else branches on its name.

Every method module ends with one `METHOD = Method(...)`: its options (defaults
and checks, read by `jax_pruning.pruner`), where it acts (`stage`), how many
tokens each sample keeps (`budget`), its selection as a pure jittable function,
its own FLOPs, and which options never reach the compiled selection. The
engine, the registry, the FLOP count, the memory planner and the benchmarks
read these fields. Adding a method is one new module in this package (found
by `jax_pruning.methods.declared`), its NumPy reference and its tests.

Plain NumPy/JAX only (methods sit below `models` and the engine): the engine
translates the model's visual-token map into the arrays below.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

# Where a method acts (`Method.stage`). The engine's prefill has one code path per stage.
BEFORE_LLM = "before_llm"  # selects among the visual tokens the LLM would see; the LLM runs on the kept ones
AT_LLM_LAYER = "at_llm_layer"  # layers < K see every token; at layer K a selection keeps k visual tokens
BIAS_THEN_REMOVE = "bias_then_remove"  # Hi-Lo: kept R + candidates C in layers < L (C under a mask), C leave at L
IN_VISION_TOWER = "in_vision_tower"  # selects (and may merge) per crop / image from the tower's own attention,
#                                      before the projector; the LLM then runs as for BEFORE_LLM
STAGES = (BEFORE_LLM, AT_LLM_LAYER, BIAS_THEN_REMOVE, IN_VISION_TOWER)


# --- option checkers: (method, option, value) -> normalised value, or ValueError ---------------


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def real(allowed: str, ok: Callable[[float], bool]) -> Callable[[str, str, Any], float]:
    """A finite real number (not a bool) satisfying `ok`; stored as a Python float."""

    def check(method: str, option: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value) or not ok(value):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {value!r}")
        return value

    return check


def integer(allowed: str, minimum: int) -> Callable[[str, str, Any], int]:
    """An integer (not a bool, not a float) >= minimum; stored as a Python int."""

    def check(method: str, option: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {_describe(value)}")
        value = int(value)
        if value < minimum:
            raise ValueError(f"{method}: option {option!r} must be {allowed}, got {value!r}")
        return value

    return check


def flag(method: str, option: str, value: Any) -> bool:
    """True or False; numpy bools pass, ints do not (True/1 confusion hides typos in configs)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"{method}: option {option!r} must be True or False, got {_describe(value)}")
    return bool(value)


def choice(*choices: str) -> Callable[[str, str, Any], str]:
    def check(method: str, option: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"{method}: option {option!r} must be one of {', '.join(map(repr, choices))}, "
                f"got {_describe(value)}"
            )
        return value

    return check


KEEP_RATIO = real("a number in (0, 1]", lambda v: 0.0 < v <= 1.0)
COSINE = real("a number in [-1, 1] (a cosine similarity)", lambda v: -1.0 <= v <= 1.0)
POSITIVE = real("a number > 0", lambda v: v > 0.0)
NON_NEGATIVE = real("a number >= 0", lambda v: v >= 0.0)
LAYER = integer("an integer >= 0", 0)


# --- what the engine hands a method -----------------------------------------------------------


class TokenCounts(NamedTuple):
    """Real visual tokens per sample [B] (int64), by kind, for the budget rules.

    images: per sample, one (base tokens, tile rows, tile cols) per image (LLaVA-NeXT anyres;
    rows = cols = 0 without tiles). items: per sample, one (tokens, temporal patches) per image or video
    in prompt order (the `item` numbering of SelectionInputs; an image has 1 temporal patch).
    """

    base: np.ndarray
    tile: np.ndarray
    newline: np.ndarray
    images: tuple
    items: tuple = ()

    @property
    def real(self) -> np.ndarray:
        return self.base + self.tile


class Budget(NamedTuple):
    """Per-sample counts [B]: kept visual tokens, their base / tile split (multi-resolution
    methods), Hi-Lo's candidates. Zeros where a method has no such split."""

    keep: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    candidates: np.ndarray | None = None
    items: np.ndarray | None = None  # [B, I]: kept tokens per image / video (methods that budget per item)


class SelectionInputs(NamedTuple):
    """One sample's visual slots for a before-LLM selection (the engine vmaps over samples).

    x [Nv, D]: the features the LLM would see. valid [Nv]: real, scorable tokens (padding and
    LLaVA-NeXT's image_newline tokens excluded: the engine keeps newlines itself). low / high
    [Nv]: base-image / anyres-tile tokens (multi-resolution methods). row / col [Nv]: grid
    coordinates (rows offset per image, so windows never span two images). keep, keep_low,
    keep_high, candidates: this sample's budgets (traced int32 scalars). sample: its batch index.
    text [T, D]: the prompt's input embeddings; text_valid [T]: its instruction tokens (the real text
    tokens after the sample's last visual token; all real text tokens when none follow it).
    item [Nv]: the image / video a slot belongs to (0.. in prompt order); item_keep [I]: per-item budgets
    (Budget.items); frame [Nv]: temporal patch within its video (0 for images); previous [Nv]: the slot
    of the same spatial cell in the previous temporal patch of the same video (-1 for a first frame and
    for images), so a method can compare a token with itself one step earlier.
    """

    x: Any
    valid: Any
    low: Any
    high: Any
    row: Any
    col: Any
    keep: Any
    keep_low: Any
    keep_high: Any
    candidates: Any
    sample: Any
    text: Any
    text_valid: Any
    item: Any = None
    item_keep: Any = None
    frame: Any = None
    previous: Any = None


class TowerInputs(NamedTuple):
    """One crop's (LLaVA-NeXT) or image's (Qwen-VL) tokens for an in-tower selection (the engine vmaps over
    samples and crops / images); see models.tower_evidence for where each comes from.

    attention [n, H]: the [CLS] query row (Qwen: mean received attention) per head; keys [n, Dk]: head-mean
    keys; hidden [n, P]: the projector inputs (what a merge averages); features [n, F]: the main
    projector's input (hidden's first F columns; what similarity-based rules compare); valid [n];
    keep: this crop's / image's budget (traced int32 scalar).
    """

    attention: Any
    keys: Any
    hidden: Any
    features: Any
    valid: Any
    keep: Any


class TowerChoice(NamedTuple):
    """An in-tower selection's result for one crop / image: keep [n]; merged [C, P] projector inputs of new
    tokens, each written at the slot merged_at [C] (which is kept), where merged_valid [C]."""

    keep: Any
    merged: Any
    merged_at: Any
    merged_valid: Any
    absorbed: Any = None  # [n]: dropped tokens folded into a merged token (None: none)


def proportional_budget(spec, counts: TokenCounts) -> Budget:
    """floor(keep_ratio x real visual tokens) per sample: the rule most methods share."""
    return Budget(np.floor(float(spec.keep_ratio) * counts.real.astype(np.float64)).astype(np.int64))


def no_flops(spec, n, width: int, text, tokens) -> np.ndarray:
    return np.zeros_like(np.asarray(n), dtype=float)


def graph_flops(n, width: int) -> np.ndarray:
    """One n x n similarity graph over width-d features: 2 n^2 d."""
    n = np.asarray(n, float)
    return 2.0 * n * n * width


@dataclasses.dataclass(frozen=True)
class Method:
    """A pruning method's declaration (see the module docstring).

    options: option -> (default, checker); keep_ratio is common to all and not listed.
    stage: BEFORE_LLM, AT_LLM_LAYER or BIAS_THEN_REMOVE.
    select(options, SelectionInputs) -> (keep [Nv], candidates [Nv]): the before-LLM selection
        of one sample, jittable with traced budgets (options: the spec's mapping).
    merge: instead of `select`, a before-LLM merge with a static k (ToMe): (x [Nv, D], valid [Nv], k) ->
        (keep [Nv], x with the merged values written at the kept slots, merged [Nv]: kept slots holding
        an average of several tokens, absorbed [Nv]: dropped tokens folded into one).
    budget(spec, TokenCounts) -> Budget.
    flops(spec, n visual [B], width, text config, prompt tokens [B]) -> the method's own FLOPs [B].
    layer_option: the option holding the LLM layer where the method acts (AT_LLM_LAYER,
        BIAS_THEN_REMOVE); checked against the model's depth. None for BEFORE_LLM.
    layers(spec, n_layers) -> ascending LLM layers of a method that selects at several (PyramidDrop);
        default: (the layer_option's value,).
    stage_keep(spec, real [B], n_stages) -> [B, n_stages] visual tokens kept after each of those
        selections (the last equals `budget`'s keep); default: the budget, one stage.
    llm_select(options, view, keep [B]) -> bool [B, T]: the AT_LLM_LAYER selection from what the
        engine's LayerView offers at that layer (hidden states entering it, its query row, cached keys).
    effective(spec, n_layers) -> stage actually run (Hi-Lo without candidates is BEFORE_LLM).
    selection_ignores: options the compiled selection never reads, mapped to a fixed value,
        so sweeping them reuses one compilation.
    multi_resolution: needs base + anyres tiles (LLaVA-NeXT); refused elsewhere.
    video_only: prunes along time (EVS); refused on families that take no video.
    tower_select(options, TowerInputs) -> TowerChoice: the IN_VISION_TOWER selection of one crop / image
        (its budget is the sample's, split over its crops / images in proportion to their tokens).
    merged_capacity(options, n) -> static count C of merged tokens a crop / image of n slots may form.
    tower_flops(options, sizes [B, G], keep [B, G], widths) -> [B]: an in-tower method's own FLOPs from its
        crops' / images' token counts and budgets and `widths` (key, feature and hidden widths, projector
        FLOPs per token).
    """

    name: str
    stage: str
    options: Mapping[str, tuple[Any, Callable[[str, str, Any], Any]]]
    select: Callable | None = None
    merge: Callable | None = None
    budget: Callable[[Any, TokenCounts], Budget] = proportional_budget
    flops: Callable = no_flops
    layer_option: str | None = None
    layers: Callable[[Any, int], tuple] | None = None
    stage_keep: Callable | None = None
    llm_select: Callable | None = None
    effective: Callable[[Any, int], str] | None = None
    selection_ignores: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    multi_resolution: bool = False
    video_only: bool = False
    tower_select: Callable | None = None
    merged_capacity: Callable[[Any, int], int] = lambda options, n: 0
    tower_flops: Callable | None = None

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"method {self.name!r}: stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == BEFORE_LLM and (self.select is None) == (self.merge is None):
            raise ValueError(f"method {self.name!r}: a before-LLM method declares exactly one of select / merge")
        if (self.stage == IN_VISION_TOWER) != (self.tower_select is not None):
            raise ValueError(f"method {self.name!r}: an in-vision-tower method declares `tower_select` (and only it)")
        if self.stage not in (BEFORE_LLM, IN_VISION_TOWER) and self.layer_option not in self.options:
            raise ValueError(f"method {self.name!r}: stage {self.stage} needs a `layer_option` among its options")

    def stage_for(self, spec, n_layers: int) -> tuple[str, tuple[int, ...]]:
        """(stage actually run, the LLM layers where tokens leave; () before the LLM) for this spec on
        an n_layers LLM (ValueError naming the option for a layer the model does not have)."""
        if self.layer_option is None:
            layers = ()
        elif self.layers is not None:
            layers = tuple(self.layers(spec, n_layers))
        else:
            layers = (spec.options[self.layer_option],)
        for layer in layers:
            if layer >= n_layers:
                raise ValueError(f"{self.name}: {self.layer_option}={spec.options[self.layer_option]!r} but the LLM "
                                 f"has {n_layers} layers (valid: 0..{n_layers - 1})")
        stage = self.stage if self.effective is None else self.effective(spec, n_layers)
        return (BEFORE_LLM, ()) if stage in (BEFORE_LLM, IN_VISION_TOWER) else (stage, layers)

    def keeps(self, spec, budget: Budget, real: np.ndarray, n_stages: int) -> np.ndarray:
        """[B, n_stages] visual tokens kept after each selection inside the LLM."""
        if self.stage_keep is None:
            return np.asarray(budget.keep)[:, None].repeat(max(n_stages, 1), axis=1)
        return np.asarray(self.stage_keep(spec, real, n_stages))


def layer_list(method: str, option: str, value: Any) -> tuple[int, ...]:
    """A strictly increasing tuple (or list) of LLM layer indices >= 1; () means the method's default."""
    if not isinstance(value, (tuple, list)) or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                                                  for v in value):
        raise ValueError(f"{method}: option {option!r} must be a tuple of layer indices, got {_describe(value)}")
    value = tuple(int(v) for v in value)
    if any(v < 1 for v in value) or any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError(f"{method}: option {option!r} must be strictly increasing layer indices >= 1, got {value!r}")
    return value


def multi_resolution_error(name: str) -> ValueError:
    return ValueError(
        f"{name} is a multi-resolution method (base image + anyres tiles, LLaVA-NeXT); this model's "
        f"visual tokens have a single resolution. Use a single-resolution method (e.g. hilo, fastv, tome, random)."
    )
