"""Key map of the Qwen-VL vision towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

HF keys appear as `visual.*` (the Hub's on-disk layout) or `model.visual.*`
(transformers-5 in-memory / save_pretrained layout); both map to the Flax
paths of `models.qwen_vision.QwenVisionTower` under `visual/`.

Each spec is (regex on the HF key, target path template, transform):
"linear" = transpose [out, in] -> [in, out]; "conv3d" = Conv3d weight
[D, C, T, P, P] -> matmul kernel [C*T*P*P, D] (the patch embedding runs on
pre-flattened patches); "none" = as is.
"""

from __future__ import annotations

_PREFIX = r"^(?:model\.)?visual\."
_LINEAR = r"(?P<lin>qkv|proj|fc1|fc2|gate_proj|up_proj|down_proj|linear_fc1|linear_fc2)"

QWEN_VISION_KEY_SPECS: tuple[tuple[str, str, str], ...] = (
    (_PREFIX + r"patch_embed\.proj\.weight$", "visual/patch_embed/proj/kernel", "conv3d"),
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
    (_PREFIX + r"(?P<mg>merger|deepstack_merger_list\.\d+)\.norm\.weight$", "visual/{mg}/norm/scale", "none"),
    (_PREFIX + r"(?P<mg>merger|deepstack_merger_list\.\d+)\.norm\.bias$", "visual/{mg}/norm/bias", "none"),
    (_PREFIX + r"(?P<mg>merger|deepstack_merger_list\.\d+)\.(?P<lin>linear_fc[12])\.weight$",
     "visual/{mg}/{lin}/kernel", "linear"),
    (_PREFIX + r"(?P<mg>merger|deepstack_merger_list\.\d+)\.(?P<lin>linear_fc[12])\.bias$",
     "visual/{mg}/{lin}/bias", "none"),
)


def target_path(spec_target: str, groups: dict) -> str:
    """Fill a target template; dotted group values (deepstack_merger_list.0) become path segments."""
    return spec_target.format(**{k: v.replace(".", "/") for k, v in groups.items()})
