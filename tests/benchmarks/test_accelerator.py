"""benchmarks/accelerator.py on the CPU: the micro presets end to end in a subprocess, then its budget guard.

Checks the JSON rows and fields (not speed): every planned row is there, FLOP bounds > 1 for pruned rows,
no compile during timed calls, the HF side ran over our pruned sequence; and that a tiny budget leaves
skipped rows with a reason and still valid JSON + Markdown, within the budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jax_pruning.methods import lookup

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "accelerator.py"
MICRO = ["--presets", "llava_next_micro", "qwen2_5_vl_micro", "--batches", "1", "2", "--keeps", "0.1",
         "--methods", "hilo", "random", "--throughput-methods", "hilo", "--repeats", "1"]


def run(out: Path, *args: str) -> tuple[dict, str, float]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # only the test forces the CPU
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "accelerator.json").read_text()), (out / "accelerator.md").read_text(), elapsed


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    # --new-tokens 1: the batch-1 samples/s rows reuse the prefill rows' programs (fewer CPU compiles)
    return run(tmp_path_factory.mktemp("acc"), *MICRO, "--new-tokens", "1")


def test_micro_run_measures_every_planned_row(full):
    data, md, _ = full
    s = data["settings"]
    assert s["backend"] == "cpu" and s["skipped"] == 0 and s["failed"] == 0 and s["stopped_by"] is None
    assert s["compiles_timed_total"] == 0
    presets = {p["preset"]: p for p in data["presets"]}
    assert list(presets) == ["llava_next_micro", "qwen2_5_vl_micro"]
    for name, p in presets.items():
        assert p["status"] == "done" and p["parameters"] > 0 and p["build_seconds"] > 0
        assert "HF random init" in p["weights"]
        prefill = {r["config"]: r for r in p["prefill"]}
        assert set(prefill) == {"unpruned", "hilo@0.1", "random@0.1"}, name
        for label, r in prefill.items():
            assert r["status"] == "done" and r["compiles_timed"] == 0
            assert r["prefill_ms"] > 0 and 0 <= r["prune_share"] < 1 and r["first_call_ms"] >= r["compile_ms"] >= 0
            assert r["device_peak_mb"] is None and r["peak_rss_mb"] > 0  # CPU: no device memory stats
            if label == "unpruned":
                assert r["speedup_llm"] == 1.0 and r["flop_bound_llm"] == 1.0 and r["compiles_first_call"] > 0
            else:
                assert r["flop_bound_llm"] > 1 and r["flop_bound_e2e"] > 1 and r["speedup_over_bound_llm"] > 0
                assert r["visual_tokens_seen"] < prefill["unpruned"]["visual_tokens_seen"]
        throughput = {r["config"]: r for r in p["throughput"]}
        assert set(throughput) == {"unpruned b1", "hilo@0.1 b1", "unpruned b2", "hilo@0.1 b2"}
        for r in throughput.values():
            assert r["status"] == "done" and r["compiles_timed"] == 0
            assert r["samples_per_second"] == pytest.approx(r["batch"] / r["batch_seconds"])
        assert throughput["unpruned b2"]["speedup"] == 1.0 and throughput["hilo@0.1 b2"]["speedup"] > 0
        hf = [r for r in p["hf"] if r["status"] == "done"]
        assert [r["config"] for r in hf] == ["hf:full_forward", "hf:lm:unpruned", "hf:lm:random@0.1"]
        assert hf[2]["tokens"] < hf[1]["tokens"]  # HF's language model ran over our pruned sequence
        assert all(r["hf_ms"] > 0 and r["ours_over_hf"] > 0 for r in hf)
        assert f"## {name}" in md
    assert "| hilo@0.1 |" in md and "| hilo@0.1 b2 | 2 |" in md and "vs HF PyTorch" in md
    assert "not measured" not in md


def test_budget_guard_skips_with_reasons_and_still_writes(tmp_path, full):
    budget = 14.0
    data, md, elapsed = run(tmp_path, *MICRO, "--budget-seconds", str(budget), "--no-hf")
    rows = [r for p in data["presets"] for kind in ("prefill", "throughput") for r in p[kind]]
    assert len(rows) == sum(len(p[k]) for p in full[0]["presets"] for k in ("prefill", "throughput"))
    assert all(p["hf"] == [] for p in data["presets"])  # --no-hf: none planned
    assert {r["status"] for r in rows} <= {"done", "skipped", "failed"}
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert skipped and all(r["reason"] for r in skipped)
    assert any(r["reason"].startswith("budget") for r in skipped)
    assert data["settings"]["wall_seconds"] <= budget + 3
    assert elapsed < budget + 10  # the process itself (interpreter start-up and exit included)
    assert "| not measured | status | reason |" in md and "budget" in md


def test_plan_order_and_estimates_skip_what_does_not_fit():
    """In-process (no model): the most important rows come first, each family gets its methods only,
    and the estimate from earlier rows (compile + runs) is what the fit check compares."""
    import argparse

    from benchmarks import accelerator as acc

    args = argparse.Namespace(keeps=[0.5, 0.25, 0.1], methods=list(acc.METHODS), throughput_methods=None,
                              batches=[1, 8, 32])
    llava = acc.plan_preset("llava_next_8b", args, hf=True)
    head = [(t.kind, t.config) for t in llava[:7]]
    assert head == [("prefill", "unpruned"), ("prefill", "mr_pruner@0.1"), ("prefill", "hilo@0.1"),
                    ("prefill", "fastv@0.1"), ("throughput", "unpruned b8"), ("throughput", "mr_pruner@0.1 b8"),
                    ("throughput", "hilo@0.1 b8")]
    assert [t.tier for t in llava] == sorted(t.tier for t in llava)
    prefill = [t.config for t in llava if t.kind == "prefill"]
    images = [m for m in acc.METHODS if not lookup(m).video_only]  # EVS prunes along time: not on image presets
    assert len(prefill) == len(set(prefill)) == 1 + len(images) * 3  # every image method at every keep, once
    assert {t.batch for t in llava if t.kind == "throughput"} == {1, 8, 32}
    assert [t.config for t in llava if t.kind.startswith("hf")] == [
        "hf:full_forward", "hf:lm:unpruned", "hf:lm:random@0.1", "hf:lm:random@0.25", "hf:lm:random@0.5"]
    qwen = acc.plan_preset("qwen2_5_vl_7b", args, hf=False)
    assert not any(t.config.startswith(("mr_pruner", "gprune", "hf:")) for t in qwen)
    assert [t.config for t in qwen[:4]] == ["unpruned", "hilo@0.1", "fastv@0.1", "unpruned b8"]
    video = acc.plan_preset("qwen2_5_vl_7b_video", args, hf=False)  # EVS applies (and comes first) on video
    assert [t.config for t in video[:5]] == ["unpruned", "evs@0.1", "hilo@0.1", "fastv@0.1", "unpruned b8"]
    assert {t.config for t in video if t.kind == "prefill"} >= {"evs@0.5", "evs@0.25", "random@0.1"}

    est = acc.Estimates()
    assert est.task(llava[0], repeats=3, new_tokens=16) is None  # nothing known yet: run (the watchdog guards)
    est.add("llava_next_8b", "prefill", compile_s=20.0, run_s=0.5)
    assert est.task(llava[1], repeats=3, new_tokens=16) == pytest.approx(20.0 + 4 * 0.5)
    assert est.task(qwen[1], repeats=3, new_tokens=16) == pytest.approx(22.0)  # from the other preset
    est.add("llava_next_8b", "throughput", compile_s=30.0, run_s=2.0, batch=8)
    b32 = next(t for t in llava if t.kind == "throughput" and t.batch == 32)
    assert est.task(b32, repeats=3, new_tokens=16) == pytest.approx(30.0 + 4 * 8.0)  # scaled by batch
