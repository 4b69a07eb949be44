"""Benchmark results: JSON + Markdown under results/<machine>/, and the README performance table.

    python benchmarks/report.py [results/amd-epyc-2c]   # prints the README table
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import describe  # noqa: E402


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def git_commit() -> str:
    """HEAD of the repository (the engine code a run measured; the tree may hold uncommitted changes)."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write(name: str, payload: dict, render, out: Path | None = None, merge: bool = False) -> Path:
    """Write <out>/<name>.json and .md (out defaults to results/<machine slug>); returns the folder.

    merge: keep the presets of an existing <name>.json that this payload does not re-measure (one
    preset per run keeps each run short); their settings stay listed under "earlier_runs"."""
    payload["machine"] = describe()
    folder = Path(out) if out is not None else HERE / "results" / payload["machine"]["slug"]
    folder.mkdir(parents=True, exist_ok=True)
    existing = folder / f"{name}.json"
    if merge and existing.is_file():
        old = json.loads(existing.read_text())
        measured = {p["preset"] for p in payload["presets"]}
        kept = [p for p in old.get("presets", []) if p["preset"] not in measured]
        if kept:
            payload["presets"] = kept + payload["presets"]
            kept_names = {p["preset"] for p in kept}
            earlier = [dict(e, presets=[n for n in e["presets"] if n in kept_names])
                       for e in old.get("earlier_runs", [])]
            from_old_run = [p["preset"] for p in kept if not any(p["preset"] in e["presets"] for e in earlier)]
            earlier.append(dict(old["settings"], presets=from_old_run))
            payload["earlier_runs"] = [e for e in earlier if e["presets"]]
    (folder / f"{name}.json").write_text(json.dumps(_plain(payload), indent=1))
    (folder / f"{name}.md").write_text(render(payload))
    return folder


def _header(payload: dict, title: str) -> list[str]:
    m, s = payload["machine"], payload["settings"]
    gpu = f", GPU: {', '.join(m['gpus'])}" if m["gpus"] else " (CPU only)"
    return [f"# {title} on {m['cpu']}, {m['cores']} cores{gpu}", "",
            f"Load average (1/5/15 min) at start {s['load_start']}, at end {s['load_end']} (shared machine); "
            f"jax {s.get('jax', '?')}, torch {s.get('torch', '?')}, float32, random weights, "
            f"repository HEAD {s.get('engine_commit', '?')}.", "",
            *[f"Presets {', '.join(e['presets'])} come from an earlier run: load at start {e['load_start']}, "
              f"at end {e['load_end']}, HEAD {e.get('engine_commit', '?')}." for e in payload.get("earlier_runs", [])], ""]


def prefill_markdown(payload: dict) -> str:
    s = payload["settings"]
    lines = _header(payload, "Prefill benchmark")
    lines += [f"Batch 1, max_new_tokens=1, {s['repeats']} alternating rounds after a compiling first call; "
              f"medians. torch threads {s['torch_threads']}. `speed-up / bound`: measured speed-up divided by "
              "the analytic FLOP ratio (1.0 = all of the FLOP saving shows up as time).", ""]
    for p in payload["presets"]:
        shown = (f"a video of {p['frames']} frames {p['image_hw'][0]}x{p['image_hw'][1]}" if p.get("frames")
                 else f"image {p['image_hw'][0]}x{p['image_hw'][1]}")
        lines += [f"## {p['preset']} ({shown}; prompt {p['prompt_tokens']} tokens incl. visual tokens)", "",
                  "| config | visual tokens seen | prefill ms | prune ms | prune share | vision ms | first call ms "
                  "| LLM speed-up | LLM FLOP bound | ratio | e2e speed-up | e2e FLOP bound | ratio | peak RSS MB "
                  "| KV MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in p["rows"]:
            lines.append(
                f"| {r['config']} | {r['visual_tokens_seen']:.0f} / {r['visual_tokens_before']} | "
                f"{r['prefill_ms']:.1f} | {r['prune_ms']:.1f} | {100 * r['prune_share']:.1f}% | "
                f"{r['prepare_ms']:.0f} | {r['first_call_ms']:.0f} | {r['speedup_llm']:.2f}x | "
                f"{r['flop_bound_llm']:.2f}x | {r['speedup_over_bound_llm']:.2f} | {r['speedup_e2e']:.2f}x | "
                f"{r['flop_bound_e2e']:.2f}x | {r['speedup_over_bound_e2e']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['kv_cache_mb']:.2f} |")
        if p["hf"]:
            lines += ["", "| vs HF PyTorch (same weights, sdpa) | tokens | ours ms | HF ms | ours / HF |",
                      "|---|---:|---:|---:|---:|"]
            for h in p["hf"]:
                lines.append(f"| {h['comparison']} | {h.get('tokens', '')} | {h['ours_ms']:.1f} | "
                             f"{h['hf_ms']:.1f} | {h['ours_over_hf']:.2f} |")
        lines.append("")
    lines += ["## Real model shapes: analytic prefill FLOP bounds (abstract models, nothing allocated)", "",
              "| model | input | params | visual tokens | vision share of unpruned prefill FLOPs | keep | tokens seen "
              "| FLOP bound |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for b in payload.get("real_flop_bounds", []):
        for r in b["rows"]:
            lines.append(f"| {b['preset']} | {b.get('input', '')} | {b['parameters'] / 1e9:.2f} B | {b['visual_tokens']} | "
                         f"{100 * b['vision_share_of_unpruned']:.1f}% | {r['keep_ratio']} | "
                         f"{r['visual_tokens_seen']} | {r['flop_bound']:.2f}x |")
    lines += ["", f"Keep 0 = the cap (no visual token left). Text tokens: {payload['real_flop_bounds'][0]['text_tokens']}"
              " per prompt." if payload.get("real_flop_bounds") else "", "",
              ("Produced by `python benchmarks/prefill.py --video`; raw times in prefill_video.json."
               if any(p.get("frames") for p in payload["presets"])
               else "Produced by `python benchmarks/prefill.py`; raw times in prefill.json."), ""]
    return "\n".join(lines)


def throughput_markdown(payload: dict) -> str:
    s = payload["settings"]
    lines = _header(payload, "Throughput benchmark")
    lines += [f"VQA-like: one image + {s['prompt_words']}-word prompt, {s['max_new_tokens']} new tokens, batch "
              f"{s['batch']}; {s['repeats']} alternating rounds after a compiling call; medians.", ""]
    for p in payload["presets"]:
        lines += [f"## {p['preset']} (batch {p.get('batch', s['batch'])})", "", "| config | samples/s | speed-up | batch s | compiles (first call) "
                  "| compiles (timed calls) |", "|---|---:|---:|---:|---:|---:|"]
        for r in p["rows"]:
            lines.append(f"| {r['config']} | {r['samples_per_second']:.2f} | {r['speedup']:.2f}x | "
                         f"{r['batch_seconds']:.2f} | {r['compiles_first_call']} | {r['compiles_timed']} |")
        lines.append("")
    lines += ["Produced by `python benchmarks/throughput.py`.", ""]
    return "\n".join(lines)


def conversion_markdown(payload: dict) -> str:
    r = payload["result"]
    lines = _header(payload, "Conversion benchmark")
    lines += ["| checkpoint GiB | largest tensor MiB | seconds | GiB/s | peak RSS over baseline MiB | "
              "peak / checkpoint |", "|---:|---:|---:|---:|---:|---:|",
              f"| {r['checkpoint_bytes'] / 2**30:.2f} | {r['largest_tensor_bytes'] / 2**20:.0f} | "
              f"{r['seconds']:.1f} | {r['checkpoint_bytes'] / 2**30 / r['seconds']:.2f} | "
              f"{r['peak_over_baseline_bytes'] / 2**20:.0f} | {r['peak_over_baseline_bytes'] / r['checkpoint_bytes']:.2f} |",
              "", "Produced by `python benchmarks/conversion.py` (float32 sharded safetensors -> our format, "
              "in a fresh subprocess).", ""]
    return "\n".join(lines)


def readme_table(folder: Path) -> str:
    """The README performance table: keep-0.1 prefill rows, HF ratios, throughput, conversion."""
    folder = Path(folder)
    lines = ["| preset | measure | value | target |", "|---|---|---:|---|"]
    prefill = folder / "prefill.json"
    if prefill.is_file():
        data = json.loads(prefill.read_text())
        for p in data["presets"]:
            for r in p["rows"]:
                if r["keep_ratio"] == 0.1:
                    lines.append(f"| {p['preset']} | {r['method']} keep 0.1: LLM prefill speed-up (FLOP bound) | "
                                 f"{r['speedup_llm']:.2f}x ({r['flop_bound_llm']:.2f}x) = "
                                 f"{r['speedup_over_bound_llm']:.2f} of bound; prune share "
                                 f"{100 * r['prune_share']:.1f}% | >= 0.9 of bound; <= 1% |")
            for h in p["hf"]:
                lines.append(f"| {p['preset']} | ours / HF PyTorch, {h['comparison']} | {h['ours_over_hf']:.2f} | "
                             "<= 0.67 |")
        for b in data.get("real_flop_bounds", []):
            for r in b["rows"]:
                if r["keep_ratio"] in (0.1, 0.0):
                    what = "cap" if r["keep_ratio"] == 0.0 else "keep 0.1"
                    lines.append(f"| {b['preset']} (analytic) | FLOP bound {what} | "
                                 f"{r['flop_bound']:.2f}x | |")
    throughput = folder / "throughput.json"
    if throughput.is_file():
        data = json.loads(throughput.read_text())
        for p in data["presets"]:
            for r in p["rows"]:
                lines.append(f"| {p['preset']} | throughput {r['config']} (batch {p.get('batch', data['settings']['batch'])}) | "
                             f"{r['samples_per_second']:.2f} samples/s ({r['speedup']:.2f}x) | |")
    conversion = folder / "conversion.json"
    if conversion.is_file():
        r = json.loads(conversion.read_text())["result"]
        lines.append(f"| conversion | {r['checkpoint_bytes'] / 2**30:.2f} GiB in {r['seconds']:.1f} s, peak RSS "
                     f"{r['peak_over_baseline_bytes'] / 2**20:.0f} MiB over baseline | | streaming |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else HERE / "results" / describe()["slug"]
    table = readme_table(folder)
    print(table)
    return table


if __name__ == "__main__":
    main()
