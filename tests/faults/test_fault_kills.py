"""SIGKILL at seeded random points of (a) a conversion (`python -m convert`'s main) and (b) an evaluation
(`jaxprune eval`'s main, on the embedded tiny LLaVA-NeXT and easy-VQA), then the same command again.

Kill points (tests/faults/kill_child.py): before, or halfway through, a numbered file write of the run (a
batch appended to predictions.jsonl, a summary / sweep file / plot moved into place, an Orbax group, a side
file, the final rename), or an external SIGKILL after a random delay (anywhere: imports, loading, compiling).

Outcome class: recovered. (a) After a kill OUT_DIR is absent or complete (with --overwrite: the old folder or
the new one), and it loads to the logits of an uninterrupted conversion; the re-run completes and no temp
folder is left. (b) After a kill every complete line of predictions.jsonl is a record of the uninterrupted
run (at most the last line cut), summaries / sweep files / plots are absent or whole; `--resume` ends with
the uninterrupted run's predictions (same ids, same answers, in order, none twice or lost) and summary
metrics, and no temp file.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models
from convert import convert_checkpoint
from convert.checkpoint import MANIFEST, is_converted_dir
from jax_pruning.eval.records import read_records
from tests.convert.tiny import TEXT, hf_text_model, save
from tests.faults import kill_child

KILLED = -9  # multiprocessing's exitcode for a SIGKILLed child


@pytest.fixture(scope="module")
def forkserver(tmp_path_factory):
    from multiprocessing import forkserver as server

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(kill_child.PRELOAD)
    server.ensure_running()  # its imports run while the test builds its checkpoints
    return ctx, tmp_path_factory.mktemp("jax-cache")


class Child:
    """One run of a command in a forked child; kill_at / half / delay choose how it dies."""

    def __init__(self, forkserver, folder: Path, kind: str, argv: list[str], name: str):
        self.ctx, self.cache = forkserver
        self.folder, self.kind, self.argv, self.name = folder, kind, argv, name

    def run(self, kill_at=None, half=False, delay=None, timeout=300):
        log, events = self.folder / f"{self.name}.log", self.folder / f"{self.name}.events"
        events.write_text("")
        process = self.ctx.Process(target=kill_child.run, args=(self.kind, self.argv, str(log), kill_at, half,
                                                                str(events), str(self.cache)))
        start = time.monotonic()
        process.start()
        process.join(delay if delay is not None else timeout)
        if process.is_alive():
            process.kill()  # the external SIGKILL (or a hung run's end)
            process.join()
            assert delay is not None, f"{self.name}: still running after {timeout} s:\n{log.read_text()[-3000:]}"
        self.seconds = time.monotonic() - start
        self.events = events.read_text().splitlines()
        self.log = log.read_text()
        return process.exitcode


def _event_point(events: list[str], index: int, half: bool) -> tuple[dict, str]:
    """Kill at the `index`-th (1-based) event of a run whose events were `events`: (its name, occurrence)."""
    names = [e.split(" ", 1)[1] for e in events]
    name = names[index - 1]
    at = (name, names[:index].count(name))
    return dict(kill_at=at, half=half), f"SIGKILL {'halfway through' if half else 'before'} {name!r} #{at[1]}"


def _timer_point(delay: float) -> tuple[dict, str]:
    return dict(delay=delay), f"external SIGKILL after {delay:.2f} s"


# ---------------------------------------------------------------- (a) conversion


IDS = np.random.default_rng(0).integers(0, TEXT["vocab_size"], size=(2, 9))


def _logits(folder: Path) -> np.ndarray:
    return np.asarray(models.load(folder)(input_ids=IDS, attention_mask=np.ones_like(IDS)))


def _state(out: Path, candidates: dict[str, np.ndarray]) -> str:
    """Which complete conversion is at `out` ('absent' if none); fails on anything half-written."""
    if not out.exists():
        return "absent"
    assert is_converted_dir(out), f"{out} exists without {MANIFEST}: {sorted(p.name for p in out.iterdir())}"
    got = _logits(out)
    for name, want in candidates.items():
        if np.array_equal(got, want):
            return name
    raise AssertionError(f"{out} loads to logits of no uninterrupted conversion")


def _no_temps(parent: Path) -> None:
    stale = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert not stale, f"stale temp folders left: {stale}"


def _exchange_supported(tmp: Path) -> bool:
    from convert.checkpoint import _exchange

    (tmp / "xa").mkdir()
    (tmp / "xb").mkdir()
    return _exchange(tmp / "xa", tmp / "xb")


def test_killed_conversions_leave_nothing_or_a_whole_folder_and_rerun_cleanly(forkserver, tmp_path):
    hf = save(hf_text_model("llama", seed=1), tmp_path / "hf")
    old_hf = save(hf_text_model("llama", seed=2), tmp_path / "old_hf")
    reference = convert_checkpoint(hf, tmp_path / "reference", progress=False)  # uninterrupted
    old = convert_checkpoint(old_hf, tmp_path / "old", progress=False)
    logits = {"new": _logits(reference), "old": _logits(old)}
    assert not np.array_equal(logits["new"], logits["old"])
    work = tmp_path / "work"
    work.mkdir()
    exchange = _exchange_supported(tmp_path)

    def command(out, overwrite, name):
        return Child(forkserver, tmp_path, "convert",
                     [str(hf), str(out), "--quiet", *(["--overwrite"] if overwrite else [])], name)

    # dry runs: how many write events, how long (the uninterrupted command line itself, too)
    dry = {}
    for overwrite in (False, True):
        out = work / f"dry{int(overwrite)}"
        if overwrite:
            shutil.copytree(old, out)
        child = command(out, overwrite, f"dry{int(overwrite)}")
        assert child.run() == 0, child.log[-3000:]
        assert _state(out, logits) == "new"
        dry[overwrite] = child
        shutil.rmtree(out)
    assert any(e.endswith("partial-save") for e in dry[False].events[1:])  # several groups: kills between them
    assert any(" exchange" in e for e in dry[True].events)

    # seeded random points: any write event (before it or halfway through it), or an external kill at any
    # moment; and, on purpose, the final move (rename / swap with the old folder)
    points = []
    for seed in range(4):
        rng, overwrite = random.Random(seed), seed % 2 == 1
        if seed < 2:
            events = dry[overwrite].events
            points.append((overwrite, *_event_point(events, rng.randint(1, len(events)), rng.random() < 0.5)))
        else:
            points.append((overwrite, *_timer_point(rng.uniform(0.05, dry[True].seconds))))
    for overwrite in (False, True):
        points.append((overwrite, *_event_point(dry[overwrite].events, len(dry[overwrite].events), False)))

    for i, (overwrite, kill, label) in enumerate(points):
        out = work / f"out{i}"
        if overwrite:
            shutil.copytree(old, out)
        child = command(out, overwrite, f"kill{i}")
        code = child.run(**kill)
        context = f"kill {i} ({'--overwrite' if overwrite else 'fresh'}, {label}; events {child.events})"
        assert code in (KILLED, 0), f"{context}: exit {code}\n{child.log[-3000:]}"
        after_kill = _state(out, logits)
        allowed = {"absent", "new"} if not overwrite else {"old", "new"} | (set() if exchange else {"absent"})
        assert after_kill in allowed, f"{context}: after the kill OUT_DIR is {after_kill}"

        rerun = command(out, overwrite, f"kill{i}-rerun")
        code = rerun.run()
        if after_kill == "new" and not overwrite:
            assert code == 2 and "already exists" in rerun.log, f"{context}: re-run: {rerun.log[-3000:]}"
        else:
            assert code == 0, f"{context}: re-run failed:\n{rerun.log[-3000:]}"
        assert _state(out, logits) == "new", context
        _no_temps(work)


# ---------------------------------------------------------------- (b) evaluation


EVAL = ["eval", "--data", "easy-vqa", "--bare-prompt", "--batch-size", "2", "--max-new-tokens", "2",
        "--method", "none", "--limit", "6"]
RUN = "unpruned"
KEYS = ("id", "ok", "prediction", "answers", "visual_tokens")


def _rows(out: Path) -> list[dict]:
    return [{k: r.get(k) for k in KEYS} for r in read_records(out / RUN / "predictions.jsonl")]


def _check_files_whole(out: Path, want_rows: list[dict], context: str) -> None:
    """After a kill: complete records only from the uninterrupted run (a cut last line is fine), and every
    summary, sweep file and plot either absent or whole."""
    rows = _rows(out)  # raises on a bad line anywhere but the last
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{context}: duplicated rows {ids}"
    by_id = {r["id"]: r for r in want_rows}
    for row in rows:
        assert row == by_id[row["id"]], f"{context}: {row} != {by_id[row['id']]}"
    for name in ("sweep.json", f"{RUN}/summary.json"):
        if (out / name).exists():
            json.loads((out / name).read_text())
    for name in ("sweep.md", f"{RUN}/summary.md"):
        if (out / name).exists():
            assert (out / name).read_text().endswith("|\n"), f"{context}: {name} cut"
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            image.load()  # a cut PNG fails here


def test_killed_evaluations_resume_to_the_uninterrupted_predictions(forkserver, tmp_path):
    base = Child(forkserver, tmp_path, "eval", [*EVAL, "--out", str(tmp_path / "base")], "base")
    assert base.run() == 0, base.log[-3000:]
    want = _rows(tmp_path / "base")
    want_summary = json.loads((tmp_path / "base" / RUN / "summary.json").read_text())
    assert len(want) == 6 and all(r["ok"] for r in want)
    appends = [i + 1 for i, e in enumerate(base.events) if e.endswith(" append")]
    assert len(appends) == 3 and any("savefig" in e for e in base.events), base.events

    out = tmp_path / "run"
    rng = random.Random(0)
    finishing = [i + 1 for i, e in enumerate(base.events) if " replace " in e]  # summaries, sweep files, plots
    # 1: a fresh run cut halfway through appending a random batch; 2: `--resume` killed from outside at a
    # random moment (loading, compiling, predicting); 3: `--resume` killed at a random one of the final writes
    # (summaries, sweep table, plots)
    kills = [_event_point(base.events, rng.choice(appends), True),
             _timer_point(rng.uniform(0.3, 3.0)),
             _event_point(base.events, rng.choice(finishing), False)]
    for i, (kill, label) in enumerate(kills):
        child = Child(forkserver, tmp_path, "eval", [*EVAL, "--out", str(out), *(["--resume"] if i else [])],
                      f"kill{i}")
        code = child.run(**kill)
        context = f"kill {i} ({label}; events {child.events})"
        assert code in (KILLED, 0), f"{context}: exit {code}\n{child.log[-3000:]}"
        _check_files_whole(out, want, context)

    final = Child(forkserver, tmp_path, "eval", [*EVAL, "--out", str(out), "--resume"], "final")
    assert final.run() == 0, final.log[-3000:]
    assert _rows(out) == want  # same ids, same answers, same order; nothing twice, nothing lost
    raw = (out / RUN / "predictions.jsonl").read_text()
    assert raw.endswith("\n") and raw.count("\n") == len(want)
    summary = json.loads((out / RUN / "summary.json").read_text())
    for key in ("metrics", "n_samples", "n_failed", "n_missing", "mean_visual_tokens"):
        assert summary[key] == want_summary[key], key
    _check_files_whole(out, want, "final")
    stale = [str(p.relative_to(out)) for p in out.rglob(".*")]
    assert not stale, f"temp files left: {stale}"
