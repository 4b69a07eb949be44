"""Key map of the Qwen-VL vision towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

HF keys appear as `visual.*` (the Hub's on-disk layout) or `model.visual.*`
(transformers-5 in-memory / save_pretrained layout); both map to the Flax
paths of `models.qwen_vision.QwenVisionTower` under `visual/`.

Each spec is (regex on the HF key, target path template, transform):
"linear" = transpose [out, in] -> [in, out]; "qwen_patch3d" = Conv3d weight
[D, C, T, P, P] -> [C, T, P, P, D] (the tower flattens it to the matmul kernel
[C*T*P*P, D] that pre-cut patches need); "none" = as is.
"""

from __future__ import annotations

from convert.rules import Rule, register_transform

register_transform("qwen_patch3d", (1, 2, 3, 4, 0))

_PREFIX = r"^(?:model\.)?visual\."
_LINEAR = r"(?P<lin>qkv|proj|fc1|fc2|gate_proj|up_proj|down_proj|linear_fc1|linear_fc2)"

QWEN_VISION_KEY_SPECS: tuple[tuple[str, str, str], ...] = (
    (_PREFIX + r"patch_embed\.proj\.weight$", "visual/patch_embed/proj/kernel", "qwen_patch3d"),
    (_PREFIX + r"patch_embed\.proj\.bias$", "visual/patch_embed/proj/bias", "none"),
    (_PREFIX + r"pos_embed\.weight$", "visual/pos_embed/embedding", "none"),
    # blocks: norms (LayerNorm has a bias, RMSNorm only a scale)
    (_PREFIX + r"blocks\.(?P<i>\d+)\.(?P<n>norm[12])\.weight$", "visual/blocks/{i}/{n}/scale", "none"),
    (_PREFIX + r"blocks\.(?P<i>\d+)\.(?P<n>norm[12])\.bias$", "visual/blocks/{i}/{n}/bias", "none"),
    (_PREFIX + r"blocks\.(?P<i>\d+)\.(?P<m>attn|mlp)\." + _LINEAR + r"\.weight$",
     "visual/blocks/{i}/{m}/{lin}/kernel", "linear"),
    (_PREFIX + r"blocks\.(?P<i>\d+)\.(?P<m>attn|mlp)\." + _LINEAR + r"\.bias$",
     "visual/blocks/{i}/{m}/{lin}/bias", "none"),
    # Qwen2 / Qwen2.5 merger: ln_q + nn.Sequential(Linear, GELU, Linear) -> fc1 / fc2
    (_PREFIX + r"merger\.ln_q\.weight$", "visual/merger/ln_q/scale", "none"),
    (_PREFIX + r"merger\.ln_q\.bias$", "visual/merger/ln_q/bias", "none"),
    (_PREFIX + r"merger\.mlp\.0\.weight$", "visual/merger/fc1/kernel", "linear"),
    (_PREFIX + r"merger\.mlp\.0\.bias$", "visual/merger/fc1/bias", "none"),
    (_PREFIX + r"merger\.mlp\.2\.weight$", "visual/merger/fc2/kernel", "linear"),
    (_PREFIX + r"merger\.mlp\.2\.bias$", "visual/merger/fc2/bias", "none"),
    # Qwen3 merger and deepstack mergers: norm, linear_fc1, linear_fc2
    (_PREFIX + r"merger\.norm\.weight$", "visual/merger/norm/scale", "none"),
    (_PREFIX + r"merger\.norm\.bias$", "visual/merger/norm/bias", "none"),
    (_PREFIX + r"merger\.(?P<lin>linear_fc[12])\.weight$", "visual/merger/{lin}/kernel", "linear"),
    (_PREFIX + r"merger\.(?P<lin>linear_fc[12])\.bias$", "visual/merger/{lin}/bias", "none"),
    (_PREFIX + r"deepstack_merger_list\.(?P<j>\d+)\.norm\.weight$", "visual/deepstack_merger_list/{j}/norm/scale",
     "none"),
    (_PREFIX + r"deepstack_merger_list\.(?P<j>\d+)\.norm\.bias$", "visual/deepstack_merger_list/{j}/norm/bias",
     "none"),
    (_PREFIX + r"deepstack_merger_list\.(?P<j>\d+)\.(?P<lin>linear_fc[12])\.weight$",
     "visual/deepstack_merger_list/{j}/{lin}/kernel", "linear"),
    (_PREFIX + r"deepstack_merger_list\.(?P<j>\d+)\.(?P<lin>linear_fc[12])\.bias$",
     "visual/deepstack_merger_list/{j}/{lin}/bias", "none"),
)


def vision_rules(model_type: str) -> list[Rule]:
    """The Qwen vision rules (the hook convert/keymaps/__init__.py calls)."""
    if model_type not in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        raise ValueError(f"vision_qwen key map serves qwen2_vl / qwen2_5_vl / qwen3_vl, not {model_type!r}")
    return [Rule(pattern, target, transform) for pattern, target, transform in QWEN_VISION_KEY_SPECS]
