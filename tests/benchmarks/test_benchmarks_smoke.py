"""Smoke tests of the benchmark scripts: each main() on a micro preset, 1 repeat, into a tmp dir.

They check the JSON each writes (fields present, figures consistent), not speed.
The real models' FLOP bounds are checked on their own (abstract models, no allocation).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import conversion, prefill, report, shapes, throughput


def test_prefill_writes_rows_hf_comparison_and_kv_bytes(tmp_path):
    prefill.main(["--presets", "llava_next_micro", "--methods", "random", "--keeps", "0.1", "--repeats", "1",
                  "--no-real", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "prefill.json").read_text())
    assert (tmp_path / "prefill.md").is_file()
    assert data["machine"]["cores"] >= 1 and len(data["settings"]["load_start"]) == 3
    (preset,) = data["presets"]
    rows = {r["config"]: r for r in preset["rows"]}
    assert set(rows) == {"unpruned", "random@0.1"}
    base, pruned = rows["unpruned"], rows["random@0.1"]
    assert base["speedup_llm"] == 1.0 and base["flop_bound_llm"] == 1.0
    assert pruned["visual_tokens_seen"] < base["visual_tokens_seen"]
    assert pruned["flop_bound_llm"] > 1.0 and pruned["prefill_flops"] < base["prefill_flops"]
    assert 0 < pruned["kv_cache_mb"] < base["kv_cache_mb"]
    assert all(r["prefill_ms"] > 0 and 0 <= r["prune_share"] < 1 and r["peak_rss_mb"] > 0 for r in rows.values())
    hf = {h["comparison"]: h for h in preset["hf"]}
    assert len(hf) == 3
    lm = [h for h in preset["hf"] if "tokens" in h]
    assert lm[1]["tokens"] < lm[0]["tokens"]  # HF's language model ran over our pruned sequence
    assert "random keep 0.1" in report.readme_table(tmp_path)


def test_prefill_video_runs_evs_on_a_clip(tmp_path):
    prefill.main(["--video", "--presets", "qwen2_5_vl_micro_video", "--methods", "evs", "hilo", "--keeps", "0.25",
                  "--repeats", "1", "--no-real", "--no-hf", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "prefill_video.json").read_text())
    (preset,) = data["presets"]
    assert preset["frames"] == 8 and "a video of 8 frames 56x56" in (tmp_path / "prefill_video.md").read_text()
    rows = {r["config"]: r for r in preset["rows"]}
    assert set(rows) == {"unpruned", "evs@0.25", "hilo@0.25"}
    assert rows["unpruned"]["visual_tokens_before"] == 4 * 2 * 2  # 4 temporal patches of 2x2 merged tokens
    assert rows["evs@0.25"]["visual_tokens_seen"] == 4  # EVS keeps the budget
    assert rows["evs@0.25"]["flop_bound_llm"] > 1.0


def test_real_qwen2_5_vl_7b_video_bound():
    """64 frames of 448x448: 32 temporal patches x 16 x 16 merged tokens; the tower counts every frame pair."""
    video, image = (shapes.flop_bound(n, keep_ratios=(0.1,), count_params=False)
                    for n in ("qwen2_5_vl_7b_video", "qwen2_5_vl_7b"))
    assert video["visual_tokens"] == 8192 and video["input"] == "64 frames 448x448"
    assert video["rows"][0]["visual_tokens_seen"] == 819
    per_patch = image["vision_tower_flops"] / (896 * 1120 // 14 ** 2)  # the same tower, per patch (windows differ)
    assert 0.7 < video["vision_tower_flops"] / (per_patch * 32 * 32 * 32) < 1.3
    assert 3.0 < video["rows"][0]["flop_bound"] < 3.5


def test_throughput_counts_samples_and_compiles_nothing_when_timed(tmp_path):
    throughput.main(["--presets", "qwen2_5_vl_micro", "--methods", "random", "--batch", "2", "--new-tokens", "2",
                     "--prompt-words", "8", "--repeats", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "throughput.json").read_text())
    rows = {r["config"]: r for r in data["presets"][0]["rows"]}
    assert set(rows) == {"unpruned", "random@0.1"}
    for r in rows.values():
        assert r["samples_per_second"] == pytest.approx(2 / r["batch_seconds"])
        assert r["compiles_timed"] == 0
    assert rows["unpruned"]["compiles_first_call"] > 0


def test_conversion_reports_size_time_and_peak(tmp_path):
    conversion.main(["--layers", "0", "--vocab", "1000", "--workdir", str(tmp_path), "--out", str(tmp_path / "r")])
    result = json.loads((tmp_path / "r" / "conversion.json").read_text())["result"]
    assert result["checkpoint_bytes"] == 2 * 1000 * 2048 * 4 + 2048 * 4
    assert result["seconds"] > 0 and result["peak_rss_bytes"] >= result["baseline_rss_bytes"] > 0
    assert result["output_bytes"] > 0.9 * result["checkpoint_bytes"]
    assert "conversion" in report.readme_table(tmp_path / "r")


def test_real_llava_next_8b_flop_bound_at_keep_0_1():
    bound = shapes.flop_bound("llava_next_8b", keep_ratios=(0.1,), count_params=False)  # prefill.py counts them
    assert bound["visual_tokens"] == 2928
    row = bound["rows"][0]
    assert row["visual_tokens_seen"] == 292 + 48
    assert 6.0 < row["flop_bound"] < 7.0
    assert 0.03 < bound["vision_share_of_unpruned"] < 0.06


def test_accuracy_runs_its_ablations_and_writes_the_table(tmp_path, monkeypatch):
    """accuracy.main on 4 questions, one method, one ablation (the flag was once shadowed and every
    ablation silently skipped): runs, the HF comparison, and the Markdown rows are all there."""
    from benchmarks import accuracy

    monkeypatch.setattr(accuracy, "METHODS", {"tiny_qwen2_vl": ("random",)})
    monkeypatch.setattr(accuracy, "ABLATIONS", {"common": (("Hi-Lo w/o merge", "hilo", {"merge": False}),)})
    accuracy.main(["--limit", "4", "--models", "tiny_qwen2_vl", "--keep", "0.5", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "accuracy.json").read_text())
    (result,) = data["results"]
    assert [r["name"] for r in result["runs"]] == ["unpruned", "random_keep0.5"]
    assert [a["label"] for a in result["ablations"]] == ["Hi-Lo w/o merge"]
    assert (tmp_path / "tiny_qwen2_vl" / "ablations" / "Hi-Lo_wo_merge" / "hilo_keep0.1" / "summary.json").is_file()
    assert 0 <= result["hf_unpruned_accuracy"] <= 100 and data["meta"]["questions"] == 4
    table = (tmp_path / "accuracy.md").read_text()
    assert "| random |" in table and "| Hi-Lo w/o merge |" in table and "random subset, seed 0" in table
