"""The evaluation runner with a fake engine: batching/padding, failures, resume, summaries, shards."""

import json
import os

import jax
import pytest
from PIL import Image

from jax_pruning.eval import records as records_module
from jax_pruning.eval.records import read_records
from jax_pruning.eval.runner import run_eval
from jax_pruning.eval.samples import Sample, SampleError, image_from_file


def _dataset(tmp_path, n, *, broken=()):
    """n exact-match samples s0..s{n-1} whose answer is 'a{i}'; ids in `broken` get missing/corrupt images."""
    samples = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        if f"s{i}" in broken and i % 2 == 0:
            pass  # missing file
        elif f"s{i}" in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
        else:
            Image.new("RGB", (8 + i, 6), (i, 0, 0)).save(path)
        samples.append(Sample(id=f"s{i}", question=f"q{i}?", answers=[f"a{i}"], task="exact_match",
                              load_image=image_from_file(path), meta={}))
    return samples


class FakeEngine:
    """Answers right for even samples, wrong for odd; records every batch it sees."""

    def __init__(self, *, crash_on_call=None, errors=None, raise_for=None):
        self.batches, self.crash_on_call = [], crash_on_call
        self.errors, self.raise_for = errors or {}, raise_for

    def __call__(self, samples):
        self.batches.append([s.id for s in samples])
        if self.crash_on_call is not None and len(self.batches) == self.crash_on_call:
            raise RuntimeError("device lost")
        if self.raise_for is not None and self.raise_for in [s.id for s in samples]:
            err = SampleError(f"prompt of {self.raise_for} longer than the largest text bucket")
            err.sample_id = self.raise_for
            raise err
        out = []
        for s in samples:
            assert s.image.mode == "RGB"
            i = int(s.id[1:])
            if s.id in self.errors:
                out.append({"error": self.errors[s.id]})
            else:
                out.append({"prediction": f"A{i}." if i % 2 == 0 else "wrong", "visual_tokens": 10 + i,
                            "prefill_flops": 1e9 * (i + 1), "new_tokens": 2})
        return out


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_static_batches_padding_dropped_and_summary(tmp_path):
    data = _dataset(tmp_path, 7)
    engine = FakeEngine()
    summary = run_eval(data, engine, tmp_path / "run", batch_size=3, name="fake",
                       config={"method": "mr_pruner", "keep_ratio": 0.25}, progress=False)
    assert engine.batches == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6", "s6", "s6"]]
    lines = _lines(tmp_path / "run" / "predictions.jsonl")
    assert [r["id"] for r in lines] == [f"s{i}" for i in range(7)]
    assert all(r["ok"] and r["new_tokens"] == 2 and r["wall_seconds"] > 0 for r in lines)
    total = sum(r["wall_seconds"] for r in lines)
    assert lines[4]["prediction"] == "A4." and lines[4]["answers"] == ["a4"]
    # 4 of 7 right (s0, s2, s4, s6: "A4." normalises to "a4")
    assert summary["metrics"]["exact_match"] == pytest.approx(100 * 4 / 7)
    assert summary["primary_metric"] == "exact_match"
    assert summary["method"] == "mr_pruner" and summary["keep_ratio"] == 0.25
    assert summary["n_samples"] == 7 and summary["n_failed"] == 0
    assert summary["mean_visual_tokens"] == pytest.approx(13.0)
    assert summary["mean_prefill_flops"] == pytest.approx(4e9)
    assert summary["samples_per_s"] == pytest.approx(7 / total)
    assert summary["devices"] == {"count": len(jax.devices()), "kind": jax.devices()[0].device_kind,
                                  "platform": jax.devices()[0].platform, "processes": 1}
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    markdown = (tmp_path / "run" / "summary.md").read_text()
    assert "| **exact_match** | 57.14 |" in markdown and "| failed | 0 |" in markdown


def test_failures_are_recorded_and_the_run_goes_on(tmp_path):
    data = _dataset(tmp_path, 8, broken={"s2", "s3"})  # s2: missing file, s3: corrupt bytes
    engine = FakeEngine(errors={"s5": "prompt too long (600 > 512 tokens)"}, raise_for="s6")
    summary = run_eval(data, engine, tmp_path / "run", batch_size=4, progress=False)
    lines = {r["id"]: r for r in _lines(tmp_path / "run" / "predictions.jsonl")}
    assert sorted(lines) == sorted(s.id for s in data)
    assert not lines["s2"]["ok"] and "does not exist" in lines["s2"]["error"]
    assert not lines["s3"]["ok"] and "does not load" in lines["s3"]["error"]
    assert lines["s5"] == {"id": "s5", "ok": False, "error": "prompt too long (600 > 512 tokens)"}
    assert not lines["s6"]["ok"] and "longer than the largest text bucket" in lines["s6"]["error"]
    assert all(lines[i]["ok"] for i in ("s0", "s1", "s4", "s7"))
    # failed slots are filled by the last good sample; the SampleError batch is retried without s6
    assert engine.batches == [["s0", "s1", "s1", "s1"], ["s4", "s5", "s6", "s7"], ["s4", "s5", "s7", "s7"]]
    assert summary["n_failed"] == 4 and summary["n_samples"] == 8
    assert summary["metrics"]["exact_match"] == pytest.approx(100 * 2 / 8)  # s0, s4 right; failures count wrong


def test_sample_error_without_an_id_fails_the_whole_batch(tmp_path):
    def predict(samples):
        raise SampleError("image too large for every capacity bucket")

    summary = run_eval(_dataset(tmp_path, 3), predict, tmp_path / "run", batch_size=2, progress=False)
    lines = _lines(tmp_path / "run" / "predictions.jsonl")
    assert [r["ok"] for r in lines] == [False] * 3
    assert summary["n_failed"] == 3 and summary["samples_per_s"] is None and summary["mean_visual_tokens"] is None


def test_resume_after_a_crash_skips_finished_ids_without_duplicates(tmp_path):
    data = _dataset(tmp_path, 10)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="device lost"):
        run_eval(data, FakeEngine(crash_on_call=3), out, batch_size=3, progress=False)
    pred = out / "predictions.jsonl"
    assert [r["id"] for r in _lines(pred)] == [f"s{i}" for i in range(6)]  # two finished batches kept
    assert not (out / "summary.json").exists()
    with open(pred, "a") as fh:  # a crash in the middle of writing the next line
        fh.write('{"id": "s6", "ok": tr')
    engine = FakeEngine()
    summary = run_eval(data, engine, out, batch_size=3, resume=True, progress=False)
    assert engine.batches == [["s6", "s7", "s8"], ["s9", "s9", "s9"]]
    ids = [r["id"] for r in _lines(pred)]
    assert ids == [f"s{i}" for i in range(10)]
    assert summary["n_samples"] == 10 and summary["metrics"]["exact_match"] == pytest.approx(50.0)
    # resuming a finished run predicts nothing and rewrites the same summary
    engine = FakeEngine()
    again = run_eval(data, engine, out, batch_size=3, resume=True, progress=False)
    assert engine.batches == [] and again["metrics"] == summary["metrics"]
    # without resume the run starts over
    run_eval(data, FakeEngine(), out, batch_size=5, progress=False)
    assert len(_lines(pred)) == 10


def test_summaries_are_written_atomically(tmp_path, monkeypatch):
    data = _dataset(tmp_path, 2)
    out = tmp_path / "run"
    run_eval(data, FakeEngine(), out, batch_size=2, progress=False)
    before = (out / "summary.json").read_text()
    replaced = []
    real_replace = os.replace

    def tracking_replace(src, dst):
        replaced.append((os.path.dirname(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(records_module.os, "replace", tracking_replace)
    run_eval(data, FakeEngine(), out, batch_size=2, progress=False, name="second")
    assert replaced == [(str(out), "summary.json"), (str(out), "summary.md")]

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(records_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run_eval(data, FakeEngine(), out, batch_size=2, progress=False, name="third")
    assert json.loads((out / "summary.json").read_text())["name"] == "second"  # old file intact
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "summary.json", "summary.md"]
    assert before != (out / "summary.json").read_text()


def test_read_records_tolerates_only_a_truncated_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c"')  # no newline: interrupted
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    path.write_text('{"id": "a"}\n{"id": "b", "x": [1, \n')  # unparsable last line
    assert [r["id"] for r in read_records(path, repair=True)] == ["a"]
    assert path.read_text() == '{"id": "a"}\n'
    path.write_text('{"id": "a"}\ngarbage\n{"id": "c"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_records(path)
    assert read_records(tmp_path / "absent.jsonl") == []


def test_bad_arguments_and_engine_contract(tmp_path):
    data = _dataset(tmp_path, 3)
    with pytest.raises(ValueError, match="batch_size"):
        run_eval(data, FakeEngine(), tmp_path / "r", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="unique"):
        run_eval(data + data[:1], FakeEngine(), tmp_path / "r", batch_size=2, progress=False)
    with pytest.raises(ValueError, match="empty"):
        run_eval([], FakeEngine(), tmp_path / "r", batch_size=2, progress=False)
    with pytest.raises(ValueError, match="1 results for a batch of 2"):
        run_eval(data, lambda s: [{"prediction": "x"}], tmp_path / "r", batch_size=2, progress=False)
    with pytest.raises(ValueError, match="no string 'prediction'"):
        run_eval(data, lambda s: [{"answer": "x"}] * len(s), tmp_path / "r", batch_size=2, progress=False)
