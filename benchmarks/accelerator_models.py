"""benchmarks/accelerator.py's models and measurements: random real-shape weights (ours, or HF's handed
over by DLPack), the VQA workload, timed generate calls and their rows, device memory, and the HF PyTorch
side run beside ours. Imported by accelerator.py after it has fixed
JAX_PLATFORMS."""

from __future__ import annotations

import statistics
import time
import types

import numpy as np

import shapes
from prefill import kv_cache_bytes, peak_rss_bytes, reset_peak_rss

def parameter_count(model) -> int:
    from flax import nnx

    return int(sum(int(np.prod(v.get_value().shape)) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))))


def device_memory() -> dict | None:
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return {"device_peak_mb": stats["peak_bytes_in_use"] / 2**20,
            "device_in_use_mb": stats.get("bytes_in_use", 0) / 2**20,
            "device_limit_mb": stats.get("bytes_limit", 0) / 2**20}


def _to_jax(tensor, dtype):
    """A torch tensor -> an owned jax array of `dtype` on JAX's default device (DLPack; no host copy when
    both sides are on the same device)."""
    import jax
    import jax.numpy as jnp

    tensor = tensor.detach().contiguous()
    try:
        x = jax.dlpack.from_dlpack(tensor)
        if x.devices() != {jax.devices()[0]}:
            x = jax.device_put(x, jax.devices()[0])
    except Exception:  # devices DLPack cannot bridge (e.g. torch on CUDA, JAX on the CPU)
        x = jnp.asarray(tensor.float().cpu().numpy())
    return x


def _numpy_dtype(torch_dtype) -> np.dtype:
    """The NumPy (or ml_dtypes) dtype of a torch dtype, for the conversion's dtype check."""
    import ml_dtypes
    import torch

    return np.dtype(ml_dtypes.bfloat16) if torch_dtype == torch.bfloat16 else np.dtype(str(torch_dtype).removeprefix("torch."))


def ours_from_hf(hf, config, dtype):
    """Our model with the HF model's weights: the converter's key map and checks (plan_conversion) over the
    in-memory state dict, each tensor moved with DLPack and transposed on the device."""
    import jax.numpy as jnp

    from convert.keymaps import keymap_for
    from convert.pipeline import is_floating, plan_conversion
    from models.params import abstract_model, flat_param_shapes, load_flat_params

    state = hf.state_dict()
    reader = types.SimpleNamespace(folder="<in-memory HF model>", keys=state.keys, tensors={
        k: types.SimpleNamespace(shape=tuple(v.shape), nbytes=v.numel() * v.element_size(), dtype=_numpy_dtype(v.dtype))
        for k, v in state.items()})
    model = abstract_model(config, dtype)
    plan = plan_conversion(reader, keymap_for(config.model_type), flat_param_shapes(model))
    flat = {}
    for item in plan:
        x = _to_jax(state[item.key], dtype)
        if is_floating(np.dtype(x.dtype)):
            x = x.astype(dtype)
        if item.transform.axes is not None:
            flat[item.target] = jnp.transpose(x, item.transform.axes)  # a new, JAX-owned buffer
        else:
            flat[item.target] = jnp.array(x, copy=True)  # owned by JAX: never aliases torch's memory
        del x
    return load_flat_params(model, flat)


def random_ours(config, dtype, seed: int = 0):
    """Our model with random weights drawn on the device (HF's init: normal 0.02, norms 1, biases 0)."""
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from models.params import abstract_model, load_flat_params

    model = abstract_model(config, dtype)
    leaves = {"/".join(map(str, path)): var.get_value() for path, var in
              nnx.to_flat_state(nnx.state(model, nnx.Param))}

    @functools.partial(jax.jit, static_argnames=("shape", "dtype", "kind"))
    def draw(key, shape, dtype, kind):
        if kind == "ones":
            return jnp.ones(shape, dtype)
        if kind == "zeros":
            return jnp.zeros(shape, dtype)
        return (0.02 * jax.random.normal(key, shape, jnp.float32)).astype(dtype)

    key = jax.random.key(seed)
    flat = {}
    for i, (path, leaf) in enumerate(sorted(leaves.items())):
        floating = jnp.issubdtype(leaf.dtype, jnp.floating)
        kind = "ones" if path.endswith("scale") else "zeros" if path.endswith("bias") or not floating else "normal"
        flat[path] = draw(jax.random.fold_in(key, i), tuple(leaf.shape), leaf.dtype, kind)
    return load_flat_params(model, flat)


def build(preset, dtype_name: str, hf_device: str | None, seed: int = 0):
    """(HF model or None, our model, how the weights were made)."""
    import jax
    import ml_dtypes

    from models.config import load_config

    config = load_config(preset.config)
    dtype = np.dtype(ml_dtypes.bfloat16) if dtype_name == "bfloat16" else np.dtype(dtype_name)
    if hf_device is None:
        model = random_ours(config, dtype, seed)
        jax.block_until_ready(model)
        return None, model, f"random ({dtype_name}, drawn with JAX on {jax.devices()[0].platform})"
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    with torch.device(hf_device):
        hf = AutoModelForImageTextToText.from_config(shapes.hf_config(preset), dtype=getattr(torch, dtype_name),
                                                     attn_implementation="sdpa").eval()
    model = ours_from_hf(hf, config, dtype)
    jax.block_until_ready(model)
    return hf, model, f"HF random init ({dtype_name}, torch on {hf_device}), converted through DLPack"


class HFSide:
    """The HF model's timings: full forward over the prompt, language model over a kept sequence."""

    def __init__(self, hf, device: str, dtype_name: str):
        import torch

        self.torch, self.hf, self.device = torch, hf, device
        self.dtype = getattr(torch, dtype_name)

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _time(self, fn, repeats: int) -> dict:
        torch = self.torch
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fn()
        self.sync()
        first = time.perf_counter() - start
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            seconds.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda" else None
        return {"hf_ms": 1e3 * med(seconds), "hf_all_ms": [1e3 * s for s in seconds], "hf_first_call_ms": 1e3 * first,
                "hf_peak_mb": peak}

    def full(self, inputs: dict, repeats: int) -> dict:
        torch = self.torch
        tensors = {}
        for k, v in inputs.items():
            if k == "mm_token_type_ids" and self.hf.config.model_type == "llava_next":
                continue
            t = torch.as_tensor(np.asarray(v)).to(self.device)
            tensors[k] = t.to(self.dtype) if t.is_floating_point() else t

        def run():
            with torch.inference_mode():
                self.hf(**tensors, logits_to_keep=1)
        return self._time(run, repeats)

    def lm(self, embeds, positions, repeats: int) -> dict:
        torch = self.torch
        e = torch.from_numpy(np.asarray(embeds, np.float32)).to(self.device, self.dtype)
        p = torch.from_numpy(np.asarray(positions)).long().to(self.device)
        mask = torch.ones(e.shape[:2], dtype=torch.long, device=self.device)
        language_model, head = self.hf.model.language_model, self.hf.lm_head

        def run():
            with torch.inference_mode():
                hidden = language_model(inputs_embeds=e, position_ids=p, attention_mask=mask).last_hidden_state
                head(hidden[:, -1:])
        return dict(self._time(run, repeats), tokens=int(e.shape[1]))


# ---- budget --------------------------------------------------------------------------------------

def workload(preset, batch: int, prompt_words: int, seed: int = 0) -> dict:
    """shapes.inputs with the tiny test tokenizers' special ids mapped to the preset's own (the real
    presets use the real checkpoints' ids; word ids are small and exist in every vocabulary)."""
    inputs = shapes.inputs(preset, batch=batch, prompt_tokens=prompt_words, seed=seed)
    c = preset.config
    if preset.family == "llava_next":
        ids = {shapes.LLAVA_IMAGE_ID: c["image_token_index"], shapes.LLAVA_PAD_ID: c["text_config"]["pad_token_id"]}
    else:
        ours = (c["image_token_id"], c["video_token_id"], c["vision_start_token_id"], c["vision_end_token_id"],
                c["pad_token_id"])
        ids = dict(zip(shapes._QWEN_TEST_IDS, ours))
    old = np.asarray(inputs["input_ids"])
    new = old.copy()
    for a, b in ids.items():
        new[old == a] = b
    inputs["input_ids"] = new
    return inputs


# ---- measurements --------------------------------------------------------------------------------

def traces() -> int:
    from jax_pruning.engine import compile_count

    return sum(compile_count().values())


def med(values) -> float:
    return float(statistics.median(values))


def timed_generate(model, inputs, spec, new_tokens: int, repeats: int) -> dict:
    """First call (compiles) + `repeats` timed calls; compile counts of each part."""
    import jax

    import jax_pruning as jp

    reset_peak_rss()
    before = traces()
    start = time.perf_counter()
    first = jp.generate(model, inputs, spec, new_tokens)
    jax.block_until_ready(first.tokens)
    first_seconds = time.perf_counter() - start
    compiles_first = traces() - before
    before = traces()
    seconds, stats = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jp.generate(model, inputs, spec, new_tokens)
        jax.block_until_ready(out.tokens)
        seconds.append(time.perf_counter() - start)
        stats.append(out.stats)
    return {"first": first, "first_seconds": first_seconds, "seconds": seconds, "stats": stats,
            "compiles_first_call": compiles_first, "compiles_timed": traces() - before,
            "peak_rss_mb": peak_rss_bytes() / 2**20}


def prefill_row(run: dict, spec, text, base: dict | None) -> dict:
    """prefill.py's figures for one configuration (base: the unpruned row of the preset, if measured)."""
    s, t = run["first"].stats, run["stats"]
    prefill, prune, prepare, decode = (med(x[k] for x in t) for k in
                                       ("prefill_seconds", "prune_seconds", "prepare_seconds", "decode_seconds"))
    row = {
        "method": s["method"], "keep_ratio": s["keep_ratio"],
        "visual_tokens_before": int(np.mean(s["visual_tokens_before"])),
        "visual_tokens_seen": float(np.mean(run["first"].visual_tokens)),
        "prefill_ms": 1e3 * prefill, "prune_ms": 1e3 * prune, "prepare_ms": 1e3 * prepare, "decode_ms": 1e3 * decode,
        "call_ms": 1e3 * med(run["seconds"]), "first_call_ms": 1e3 * run["first_seconds"],
        "compile_ms": 1e3 * max(0.0, run["first_seconds"] - med(run["seconds"])),
        "prefill_all_ms": [round(1e3 * x["prefill_seconds"], 3) for x in t],
        "prune_share": prune / (prune + prefill),
        "prefill_flops": s["prefill_flops"], "llm_flops": s["llm_flops"], "vision_flops": s["vision_flops"],
        "prune_flops": s["prune_flops"],
        "kv_cache_mb": kv_cache_bytes(s, spec, text, dtype_bytes=2) / 2**20,
        "compiles_first_call": run["compiles_first_call"], "compiles_timed": run["compiles_timed"],
        "peak_rss_mb": run["peak_rss_mb"], "repeats": len(t),
    }
    row["e2e_ms"] = row["prepare_ms"] + row["prune_ms"] + row["prefill_ms"]
    for key in ("speedup_llm", "flop_bound_llm", "speedup_over_bound_llm", "speedup_e2e", "flop_bound_e2e",
                "speedup_over_bound_e2e"):
        row[key] = None
    base = row if run["first"].stats["method"] == "none" else base
    if base is not None:
        row["speedup_llm"] = base["prefill_ms"] / row["prefill_ms"]
        row["flop_bound_llm"] = base["llm_flops"] / row["llm_flops"]
        row["speedup_over_bound_llm"] = row["speedup_llm"] / row["flop_bound_llm"]
        row["speedup_e2e"] = base["e2e_ms"] / row["e2e_ms"]
        row["flop_bound_e2e"] = base["prefill_flops"] / row["prefill_flops"]
        row["speedup_over_bound_e2e"] = row["speedup_e2e"] / row["flop_bound_e2e"]
    return row


def throughput_row(run: dict, batch: int, base: dict | None) -> dict:
    seconds = med(run["seconds"])
    t = run["stats"]
    row = {"method": run["first"].stats["method"], "keep_ratio": run["first"].stats["keep_ratio"],
           "batch_seconds": seconds, "samples_per_second": batch / seconds,
           "all_seconds": run["seconds"], "first_call_seconds": run["first_seconds"],
           "compile_seconds": max(0.0, run["first_seconds"] - seconds),
           "visual_tokens_seen": float(np.mean(run["first"].visual_tokens)),
           "compiles_first_call": run["compiles_first_call"], "compiles_timed": run["compiles_timed"],
           "peak_rss_mb": run["peak_rss_mb"], "repeats": len(t), "speedup": None}
    for k in ("prepare", "prune", "prefill", "decode"):
        row[f"{k}_ms"] = 1e3 * med(x[f"{k}_seconds"] for x in t)
    if base is not None:
        row["speedup"] = base["batch_seconds"] / seconds
    elif row["method"] == "none":
        row["speedup"] = 1.0
    return row


