"""CLIP ViT vision tower in flax.nnx, numerically equal to HF `CLIPVisionModel`.

Module attributes mirror the transformers-5 parameter names
(`embeddings.patch_embedding`, `pre_layrnorm`, `encoder.layers.<i>.self_attn.q_proj`,
...), so the key map (convert/keymaps/vision_clip.py) is a rename table.

The patch convolution (kernel = stride = patch) runs as one matmul on
flattened patches; its kernel is stored HWIO [P, P, C, D] (the HF Conv2d
weight [D, C, P, P] through the converter's "conv2d" transform).

Hidden-state indices follow HF: 0 = embeddings after `pre_layrnorm`, i = output
of encoder layer i. Only the layers up to the deepest requested index run
(LLaVA-NeXT reads layer -2, so the last layer is skipped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models.attention import attention
from models.vision_config import ClipVisionConfig


def clip_activation(name: str):
    """The HF ACT2FN entries CLIP towers and LLaVA projectors use."""
    table = {
        "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
        "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
        "relu": jax.nn.relu,
    }
    if name not in table:
        raise ValueError(f"unsupported activation {name!r}; expected one of {sorted(table)}")
    return table[name]


def _layer_norm(features: int, eps: float, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # two-pass variance like torch (the fast E[x^2]-E[x]^2 form loses digits)
    return nnx.LayerNorm(features, epsilon=eps, use_fast_variance=False, param_dtype=dtype, rngs=rngs)


def _linear(d_in: int, d_out: int, dtype, rngs: nnx.Rngs, bias: bool = True) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=bias, param_dtype=dtype, rngs=rngs)


class PatchEmbedding(nnx.Module):
    """Conv2d(kernel=stride=P, no bias) as a matmul: non-overlapping patches need no convolution."""

    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        self.config = config
        p, c, d = config.patch_size, config.num_channels, config.hidden_size
        scale = config.patch_dim**-0.5
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (p, p, c, d), dtype) * scale)  # HWIO

    def __call__(self, pixel_values):  # [N, C, H, W] -> [N, g*g, D]
        c = self.config
        n, g, p = pixel_values.shape[0], c.grid_side, c.patch_size
        patches = pixel_values.reshape(n, c.num_channels, g, p, g, p)
        patches = patches.transpose(0, 2, 4, 3, 5, 1).reshape(n, g * g, c.patch_dim)  # (P, P, C) = kernel's HWI
        kernel = self.kernel[...]
        return patches.astype(kernel.dtype) @ kernel.reshape(c.patch_dim, c.hidden_size)


class ClipEmbeddings(nnx.Module):
    """Patch matmul + CLS token + learned absolute positions."""

    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        self.config = config
        d = config.hidden_size
        self.patch_embedding = PatchEmbedding(config, dtype, rngs)
        self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (d,), dtype) * d**-0.5)
        self.position_embedding = nnx.Embed(config.num_patches + 1, d, param_dtype=dtype, rngs=rngs)

    def __call__(self, pixel_values):  # [N, C, H, W] -> [N, 1 + g*g, D]
        patch_embeds = self.patch_embedding(pixel_values)
        n, d = patch_embeds.shape[0], self.config.hidden_size
        cls = jnp.broadcast_to(self.class_embedding[...], (n, 1, d)).astype(patch_embeds.dtype)
        embeddings = jnp.concatenate([cls, patch_embeds], axis=1)
        return embeddings + self.position_embedding.embedding[...][None]


class ClipAttention(nnx.Module):
    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        d = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.q_proj = _linear(d, d, dtype, rngs)
        self.k_proj = _linear(d, d, dtype, rngs)
        self.v_proj = _linear(d, d, dtype, rngs)
        self.out_proj = _linear(d, d, dtype, rngs)

    def cls_row_and_keys(self, x):
        """x [N, T, D] (after layer_norm1) -> (softmax of the [CLS] (token 0) query row over all T keys, per
        head [N, H, T] float32; the keys averaged over heads [N, T, head_dim] float32)."""
        n, t, _ = x.shape
        q = self.q_proj(x[:, :1]).reshape(n, self.num_heads, self.head_dim).astype(jnp.float32)
        k = self.k_proj(x).reshape(n, t, self.num_heads, self.head_dim).astype(jnp.float32)
        logits = jnp.einsum("nhd,nthd->nht", q, k, precision=jax.lax.Precision.HIGHEST) * self.head_dim**-0.5
        return jax.nn.softmax(logits, axis=-1), jnp.mean(k, axis=2)

    def __call__(self, x):  # [N, T, D] -> [N, T, D]; full bidirectional attention, no mask
        n, t, _ = x.shape
        split = lambda y: y.reshape(n, t, self.num_heads, self.head_dim)  # noqa: E731
        out = attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.reshape(n, t, -1))


class ClipMLP(nnx.Module):
    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        self.act = clip_activation(config.hidden_act)
        self.fc1 = _linear(config.hidden_size, config.intermediate_size, dtype, rngs)
        self.fc2 = _linear(config.intermediate_size, config.hidden_size, dtype, rngs)

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nnx.Module):
    """Pre-LN transformer block."""

    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        self.layer_norm1 = _layer_norm(config.hidden_size, config.layer_norm_eps, dtype, rngs)
        self.self_attn = ClipAttention(config, dtype, rngs)
        self.layer_norm2 = _layer_norm(config.hidden_size, config.layer_norm_eps, dtype, rngs)
        self.mlp = ClipMLP(config, dtype, rngs)

    def __call__(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nnx.Module):
    def __init__(self, config: ClipVisionConfig, dtype, rngs: nnx.Rngs):
        self.layers = nnx.List([ClipEncoderLayer(config, dtype, rngs) for _ in range(config.num_hidden_layers)])


class ClipVisionTower(nnx.Module):
    """HF CLIPVisionModel. `post_layernorm` only feeds the pooled output, which LLaVA never reads;
    it is kept so checkpoints load with no unexpected keys."""

    def __init__(self, config: ClipVisionConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = ClipEmbeddings(config, dtype, rngs)
        self.pre_layrnorm = _layer_norm(config.hidden_size, config.layer_norm_eps, dtype, rngs)
        self.encoder = ClipEncoder(config, dtype, rngs)
        self.post_layernorm = _layer_norm(config.hidden_size, config.layer_norm_eps, dtype, rngs)

    def check_crop_shape(self, shape: tuple[int, ...]) -> None:
        """ValueError unless `shape` ends in [C, image_size, image_size] (crops of this tower)."""
        c = self.config
        want = (c.num_channels, c.image_size, c.image_size)
        if len(shape) < 4 or tuple(shape[-3:]) != want:
            raise ValueError(
                f"CLIP tower: pixel_values has shape {tuple(shape)}; expected [..., {want[0]}, {want[1]}, {want[2]}] "
                f"crops"
            )

    def hidden_states(self, pixel_values, indices: tuple[int, ...]) -> tuple[jax.Array, ...]:
        """The hidden states at `indices` (HF numbering, negatives allowed), each [N, 1 + g*g, D]."""
        return self._run(pixel_values, indices, evidence=False)[0]

    def hidden_states_and_evidence(self, pixel_values, indices: tuple[int, ...]):
        """`hidden_states` plus what in-tower pruning (VisionZip, VisPruner) reads from the layer that
        produced the deepest requested state: its [CLS] query row, softmax over all 1 + g*g keys
        [N, H, 1 + g*g] (one query row, never the full matrix), and its keys k_proj(layer_norm1(input))
        averaged over heads [N, 1 + g*g, head_dim]."""
        return self._run(pixel_values, indices, evidence=True)

    def _run(self, pixel_values, indices: tuple[int, ...], evidence: bool):
        if pixel_values.ndim != 4:
            raise ValueError(f"CLIP tower: pixel_values has shape {tuple(pixel_values.shape)}; expected 4-D crops")
        self.check_crop_shape(tuple(pixel_values.shape))
        n_states = self.config.num_hidden_layers + 1
        for i in indices:
            if not -n_states <= i < n_states:
                raise ValueError(f"CLIP tower: hidden-state index {i} out of range for {n_states} hidden states")
        resolved = [i % n_states for i in indices]
        deepest = max(resolved)
        if evidence and deepest == 0:
            raise ValueError("CLIP tower: in-tower pruning reads the attention of the layer producing the features, "
                             "but vision_feature_layer selects the embeddings (index 0), which no layer produces")
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        states, found = [x], None
        for i, layer in enumerate(self.encoder.layers[:deepest]):
            if evidence and i == deepest - 1:
                found = layer.self_attn.cls_row_and_keys(layer.layer_norm1(x))
            x = layer(x)
            states.append(x)
        return tuple(states[i] for i in resolved), found

    def __call__(self, pixel_values) -> tuple[jax.Array, ...]:
        """All hidden states (embeddings + every layer), like HF `output_hidden_states=True`."""
        return self.hidden_states(pixel_values, tuple(range(self.config.num_hidden_layers + 1)))


def select_features(states: tuple[jax.Array, ...], select_strategy: str) -> jax.Array:
    """LLaVA feature selection: concat the chosen layers on the channel axis; "default" drops CLS."""
    features = states[0] if len(states) == 1 else jnp.concatenate(states, axis=-1)  # [N, 1 + g*g, D * layers]
    if select_strategy == "default":
        return features[:, 1:]
    if select_strategy == "full":
        return features
    raise ValueError(f"vision_feature_select_strategy {select_strategy!r}; expected 'default' or 'full'")
