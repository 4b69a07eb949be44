"""Prefill benchmark: pruned vs unpruned prefill latency next to its analytic FLOP bound, and vs HF PyTorch.

For each preset (random weights, HF and ours identical) and each configuration
(unpruned; every applicable method at each keep ratio), `jp.generate(...,
max_new_tokens=1)` is called once to compile (its time is reported as compile
time), then all configurations run in turn (A B C ... A B C ...) `--repeats`
times so background load hits them alike; medians are reported.

Per configuration: LLM prefill seconds (stats['prefill_seconds']), the pruning
op's seconds (stats['prune_seconds']) and its share, the vision side
(stats['prepare_seconds']), measured speed-ups vs unpruned (LLM prefill only,
and end to end = prepare + prune + prefill) next to the analytic FLOP bounds
(LLM FLOPs only; all prefill FLOPs incl. vision), their ratio, peak RSS of the
call (VmHWM after resetting it), KV-cache bytes held after prefill.

HF PyTorch (same weights, same process, sdpa attention, alternating with ours):
the full forward over the prompt (vision + LLM; ours: prepare + prefill), and
the language model alone over the sequence our engine keeps: `inputs_embeds`
of the kept tokens (from our PreparedInputs and the engine's keep labels) with
their original position ids. The pruned HF rows use the "random" method's
kept tokens (a pre-LLM method: every layer sees the same kept sequence).

    python benchmarks/prefill.py [--presets llava_next_cpu qwen2_5_vl_cpu] [--repeats 3]
    python benchmarks/prefill.py --video     # a 64-frame clip through Qwen2.5-VL (results: prefill_video.*)

Video presets (`--video`) run the temporal methods and the pre-LLM ones that see any visual tokens (EVS,
Hi-Lo over space-time, Random, ToMe, DivPrune) and FastV, at keep 0.5 / 0.25 / 0.1, and the real-shape
bound of a 64-frame 448x448 clip through Qwen2.5-VL-7B.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import report  # noqa: E402
import shapes  # noqa: E402

import jax_pruning as jp  # noqa: E402
from jax_pruning.engine.generate import stage_of  # noqa: E402
from jax_pruning.methods import lookup  # noqa: E402

METHODS = jp.METHODS
KEEPS = (0.5, 0.3, 0.1, 0.05)
VIDEO_METHODS = ("evs", "hilo", "random", "tome", "divprune", "fastv")
VIDEO_KEEPS = (0.5, 0.25, 0.1)
HF_PRUNED_METHOD = "random"


# ---- measurement helpers (shared with throughput.py) ---------------------------------------------

def reset_peak_rss() -> None:
    """Reset VmHWM of this process (Linux: clear_refs 5), so the next reading is this call's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def alternate(runners: dict, repeats: int) -> dict[str, list[dict]]:
    """Run every runner once per round, `repeats` rounds (A B C A B C ...); each returns a dict of figures."""
    results = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            reset_peak_rss()
            figures = run()
            figures["peak_rss_bytes"] = peak_rss_bytes()
            results[name].append(figures)
    return results


def median(rows: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def method_specs(family: str, methods=METHODS, keeps=KEEPS, video: bool = False) -> dict:
    """{label: PrunerSpec or None} of the configurations that apply to a family (and input kind)."""
    specs = {"unpruned": None}
    for method in methods:
        if lookup(method).multi_resolution and family != "llava_next":
            continue  # they split base image / anyres tiles: LLaVA-NeXT only
        if lookup(method).video_only and not video:
            continue  # EVS prunes along time: image presets have none
        for keep in keeps:
            specs[f"{method}@{keep}"] = jp.pruner(method, keep_ratio=keep)
    return specs


def kv_cache_bytes(stats: dict, spec, text_config, dtype_bytes: int = 4) -> float:
    """Bytes the KV cache holds after prefill (sample mean): tokens x layers x 2 x kv_heads x head_dim x bytes."""
    n = text_config.num_hidden_layers
    tokens = [float(np.mean(t)) for t in stats["kv_cache_tokens"]]
    _, splits = stage_of(spec, n)
    bounds = (0, *splits, n)
    layers = [stop - start for start, stop in zip(bounds[:-1], bounds[1:])]
    per_token_layer = 2 * text_config.num_key_value_heads * text_config.head_dim * dtype_bytes
    return float(sum(t * l for t, l in zip(tokens, layers)) * per_token_layer)


# ---- HF side -------------------------------------------------------------------------------------

def kept_sequence(model, inputs: dict, out) -> tuple[np.ndarray, np.ndarray]:
    """(inputs_embeds [1, N, D], position_ids [1, N] or [3, 1, N]) of the tokens the engine kept (sample 0)."""
    from jax_pruning.engine.generate import KEPT, MERGED
    from jax_pruning.engine.staging import stage

    pad = int(model.config.pad_token_id or 0)
    prepared = stage(model, inputs, pad)
    keep = np.asarray(prepared.attention_mask)[0].astype(bool)
    index, valid = np.asarray(prepared.visual.index)[0], np.asarray(prepared.visual.valid)[0]
    dropped = valid & ~np.isin(out.visual_labels[0], (KEPT, MERGED))
    keep[index[dropped]] = False
    embeds = np.asarray(prepared.inputs_embeds)[:, keep]
    positions = np.asarray(prepared.position_ids)[..., keep]
    return embeds, positions


def hf_runners(hf, model, inputs: dict, pruned_outputs: dict) -> dict:
    """{label: runner} for the HF full forward and the HF language model over our kept sequences."""
    import torch

    tensors = {k: torch.as_tensor(v) for k, v in inputs.items() if k != "mm_token_type_ids"}
    if "mm_token_type_ids" in inputs and hf.config.model_type != "llava_next":
        tensors["mm_token_type_ids"] = torch.as_tensor(inputs["mm_token_type_ids"])
    language_model, head = hf.model.language_model, hf.lm_head

    def full():
        start = time.perf_counter()
        with torch.no_grad():
            hf(**tensors, logits_to_keep=1)
        return {"seconds": time.perf_counter() - start}

    def lm_only(embeds, positions):
        e, p = torch.from_numpy(np.array(embeds)), torch.from_numpy(np.array(positions)).long()
        mask = torch.ones(e.shape[:2], dtype=torch.long)

        def run():
            start = time.perf_counter()
            with torch.no_grad():
                hidden = language_model(inputs_embeds=e, position_ids=p, attention_mask=mask).last_hidden_state
                head(hidden[:, -1:])
            return {"seconds": time.perf_counter() - start, "tokens": int(e.shape[1])}

        return run

    runners = {"hf:full_forward": full}
    for label, (embeds, positions) in pruned_outputs.items():
        runners[f"hf:lm:{label}"] = lm_only(embeds, positions)
    return runners


# ---- one preset ----------------------------------------------------------------------------------

def bench_preset(name: str, methods, keeps, repeats: int, with_hf: bool) -> dict:
    import jax_pruning as jp
    from jax_pruning.engine import compile_count

    preset = shapes.get(name)
    with tempfile.TemporaryDirectory() as folder:
        hf, model = shapes.build(preset, folder)
    inputs = shapes.inputs(preset, batch=1)
    text = model.config.text
    specs = method_specs(preset.family, methods, keeps, video=preset.is_video)

    first, compile_seconds, compiles = {}, {}, {}
    for label, spec in specs.items():
        before = sum(compile_count().values())
        start = time.perf_counter()
        first[label] = jp.generate(model, inputs, spec, 1)
        compile_seconds[label] = time.perf_counter() - start
        compiles[label] = sum(compile_count().values()) - before

    def ours(spec):
        def run():
            s = jp.generate(model, inputs, spec, 1).stats
            return {k: s[k] for k in ("prepare_seconds", "prune_seconds", "prefill_seconds")}
        return run

    runners = {label: ours(spec) for label, spec in specs.items()}
    if with_hf:
        kept = {"unpruned": kept_sequence(model, inputs, first["unpruned"])}
        for keep in keeps:
            label = f"{HF_PRUNED_METHOD}@{keep}"
            if label in first:
                kept[label] = kept_sequence(model, inputs, first[label])
        hf_run = hf_runners(hf, model, inputs, kept)
        for run in hf_run.values():
            run()  # warm-up
        runners.update(hf_run)
    timings = alternate(runners, repeats)

    base = first["unpruned"].stats
    base_prefill = median(timings["unpruned"], "prefill_seconds")
    base_e2e = sum(median(timings["unpruned"], k) for k in ("prepare_seconds", "prune_seconds", "prefill_seconds"))
    rows = []
    for label, spec in specs.items():
        s, t = first[label].stats, timings[label]
        prefill, prune, prepare = (median(t, k) for k in ("prefill_seconds", "prune_seconds", "prepare_seconds"))
        speedup, e2e = base_prefill / prefill, base_e2e / (prepare + prune + prefill)
        llm_bound = base["llm_flops"] / s["llm_flops"]
        full_bound = base["prefill_flops"] / s["prefill_flops"]
        row = {
            "config": label, "method": s["method"], "keep_ratio": s["keep_ratio"],
            "visual_tokens_before": int(np.mean(s["visual_tokens_before"])),
            "visual_tokens_seen": float(np.mean(first[label].visual_tokens)),
            "prefill_ms": 1e3 * prefill, "prune_ms": 1e3 * prune, "prepare_ms": 1e3 * prepare,
            "first_call_ms": 1e3 * compile_seconds[label], "compiles_first_call": compiles[label],
            "prefill_all_ms": [round(1e3 * r["prefill_seconds"], 3) for r in t],
            "speedup_llm": speedup, "flop_bound_llm": llm_bound, "speedup_over_bound_llm": speedup / llm_bound,
            "speedup_e2e": e2e, "flop_bound_e2e": full_bound, "speedup_over_bound_e2e": e2e / full_bound,
            "prune_share": prune / (prune + prefill),
            "prefill_flops": s["prefill_flops"], "llm_flops": s["llm_flops"], "vision_flops": s["vision_flops"],
            "prune_flops": s["prune_flops"],
            "peak_rss_mb": max(r["peak_rss_bytes"] for r in t) / 2**20,
            "kv_cache_mb": kv_cache_bytes(s, spec, text) / 2**20,
        }
        rows.append(row)
    hf_rows = []
    if with_hf:
        ours_full = base_e2e
        hf_full = median(timings["hf:full_forward"], "seconds")
        hf_rows.append({"comparison": "full forward (vision + LLM), unpruned", "ours_ms": 1e3 * ours_full,
                        "hf_ms": 1e3 * hf_full, "ours_over_hf": ours_full / hf_full})
        for label in [k for k in runners if k.startswith("hf:lm:")]:
            cfg = label.removeprefix("hf:lm:")
            ours_ms = median(timings[cfg], "prefill_seconds")
            hf_ms = median(timings[label], "seconds")
            hf_rows.append({"comparison": f"language model over the kept sequence, {cfg}",
                            "tokens": timings[label][0]["tokens"], "ours_ms": 1e3 * ours_ms, "hf_ms": 1e3 * hf_ms,
                            "ours_over_hf": ours_ms / hf_ms})
    del hf, model
    return {"preset": name, "config": preset.config, "image_hw": list(preset.image_hw), "frames": preset.frames,
            "prompt_tokens": int(np.asarray(inputs["input_ids"]).shape[1]), "repeats": repeats,
            "rows": rows, "hf": hf_rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", action="store_true",
                        help="the video presets, methods and keeps (results: prefill_video.*)")
    parser.add_argument("--presets", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--keeps", nargs="+", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (JAX uses every core)")
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--no-real", action="store_true", help="skip the real models' analytic FLOP bounds")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/<machine>)")
    parser.add_argument("--merge", action="store_true", help="keep other presets already in the results file")
    args = parser.parse_args(argv)
    args.presets = args.presets or list(shapes.CPU_VIDEO if args.video else shapes.CPU)
    args.methods = args.methods or list(VIDEO_METHODS if args.video else METHODS)
    args.keeps = args.keeps or list(VIDEO_KEEPS if args.video else KEEPS)
    import jax
    import torch

    torch.set_num_threads(args.threads)
    settings = {"repeats": args.repeats, "torch_threads": args.threads, "jax": jax.__version__,
                "torch": torch.__version__, "dtype": "float32", "batch": 1, "max_new_tokens": 1,
                "load_start": report.loadavg()}
    real = [] if args.no_real else [shapes.flop_bound(n, keep_ratios=tuple(args.keeps))
                                    for n in (shapes.REAL_VIDEO if args.video else shapes.REAL)]
    settings["engine_commit"] = report.git_commit()
    start = time.perf_counter()
    presets = [bench_preset(p, args.methods, args.keeps, args.repeats, not args.no_hf) for p in args.presets]
    settings["load_end"] = report.loadavg()
    settings["wall_seconds"] = time.perf_counter() - start
    payload = {"settings": settings, "presets": presets, "real_flop_bounds": real}
    folder = report.write("prefill_video" if args.video else "prefill", payload, report.prefill_markdown, args.out,
                          args.merge)
    print(report.prefill_markdown(payload))
    print("results in", folder)
    return payload


if __name__ == "__main__":
    main()
