"""benchmarks/accelerator.py's Markdown report of its JSON payload."""

from __future__ import annotations

NAME = "accelerator"


def _f(value, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown(payload: dict) -> str:
    s, m = payload["settings"], payload["machine"]
    gpu = f", GPU: {', '.join(m['gpus'])}" if m["gpus"] else " (no GPU)"
    lines = [f"# Accelerator benchmark on {m['cpu']}, {m['cores']} cores{gpu}", "",
             f"JAX backend {s['backend']} ({', '.join(s['devices'])}), jax {s['jax']}, "
             f"torch {s.get('torch') or '–'}, "
             f"{s['dtype']} random weights, repository HEAD {s['engine_commit']}. Budget {s['budget_seconds']:.0f} s, "
             f"wall {s['wall_seconds']:.0f} s{'; ' + s['stopped_by'] if s.get('stopped_by') else ''}. "
             f"{s['done']} configurations done, {s['skipped']} skipped, {s['failed']} failed; "
             f"compiles during timed calls: {s['compiles_timed_total']}.", "",
             f"Prefill: batch 1, max_new_tokens=1, a {s['prompt_words']}-word prompt. Throughput: "
             f"{s['max_new_tokens']} new tokens, one image per sample. Each: a first (compiling) call, then "
             f"{s['repeats']} timed calls, medians; `compile` = first call minus the median call. "
             "`speed-up / bound`: measured speed-up over unpruned divided by the analytic FLOP ratio. "
             f"HF PyTorch: {s['hf']}.", ""]
    if s.get("device_memory_note"):
        lines += [s["device_memory_note"], ""]
    for p in payload["presets"]:
        lines += [f"## {p['preset']}", ""]
        if "build_seconds" in p:
            n = p["parameters"]
            size = f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"
            lines += [f"{size} parameters; {p['weights']}; built in {p['build_seconds']:.1f} s; "
                      f"prompt {p['prompt_tokens']} tokens incl. image tokens; image {p['image_hw']}; "
                      f"status {p['status']}.", ""]
        else:
            lines += [f"status {p['status']}.", ""]
        done = [r for r in p["prefill"] if r["status"] == "done"]
        if done:
            lines += ["| config | visual tokens seen | prefill ms | prune ms | prune share | vision ms | compile ms "
                      "| LLM speed-up | LLM FLOP bound | ratio | e2e speed-up | e2e FLOP bound | ratio "
                      "| compiles first / timed | device peak MB | peak RSS MB |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in done:
                lines.append(
                    f"| {r['config']} | {r['visual_tokens_seen']:.0f} / {r['visual_tokens_before']} | "
                    f"{r['prefill_ms']:.2f} | {r['prune_ms']:.2f} | {100 * r['prune_share']:.1f}% | "
                    f"{r['prepare_ms']:.1f} | {r['compile_ms']:.0f} | {_f(r['speedup_llm'], '.2f', 'x')} | "
                    f"{_f(r['flop_bound_llm'], '.2f', 'x')} | {_f(r['speedup_over_bound_llm'], '.2f')} | "
                    f"{_f(r['speedup_e2e'], '.2f', 'x')} | {_f(r['flop_bound_e2e'], '.2f', 'x')} | "
                    f"{_f(r['speedup_over_bound_e2e'], '.2f')} | {r['compiles_first_call']} / {r['compiles_timed']} | "
                    f"{_f(r['device_peak_mb'], '.0f')} | {r['peak_rss_mb']:.0f} |")
            lines.append("")
        done = [r for r in p["throughput"] if r["status"] == "done"]
        if done:
            lines += ["| config | batch | samples/s | speed-up | batch s | vision ms | prune ms | prefill ms "
                      "| decode ms | compile s | compiles first / timed | device peak MB |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in done:
                lines.append(
                    f"| {r['config']} | {r['batch']} | {r['samples_per_second']:.2f} | "
                    f"{_f(r['speedup'], '.2f', 'x')} | "
                    f"{r['batch_seconds']:.3f} | {r['prepare_ms']:.1f} | {r['prune_ms']:.1f} | {r['prefill_ms']:.1f} | "
                    f"{r['decode_ms']:.1f} | {r['compile_seconds']:.1f} | {r['compiles_first_call']} / "
                    f"{r['compiles_timed']} | {_f(r['device_peak_mb'], '.0f')} |")
            lines.append("")
        done = [r for r in p["hf"] if r["status"] == "done"]
        if done:
            lines += ["| vs HF PyTorch (same weights, sdpa) | tokens | ours ms | HF ms | ours / HF | HF first call ms "
                      "| HF peak MB |", "|---|---:|---:|---:|---:|---:|---:|"]
            for r in done:
                lines.append(f"| {r['comparison']} | {r.get('tokens', '')} | {r['ours_ms']:.2f} | {r['hf_ms']:.2f} | "
                             f"{r['ours_over_hf']:.2f} | {r['hf_first_call_ms']:.0f} | {_f(r['hf_peak_mb'], '.0f')} |")
            lines.append("")
        missing = [r for r in p["prefill"] + p["throughput"] + p["hf"] if r["status"] != "done"]
        if missing:
            lines += ["| not measured | status | reason |", "|---|---|---|"]
            lines += [f"| {r['config']} | {r['status']} | {r.get('reason', '').replace('|', '/')} |" for r in missing]
            lines.append("")
    lines += [f"Produced by `python benchmarks/accelerator.py {' '.join(s['argv'])}`; raw figures in {NAME}.json.", ""]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------

