"""`jaxprune eval --distributed`: 2 local processes x 2 CPU devices each (gloo collectives on 127.0.0.1).

The predictions of the 2-process run equal a 1-process run's; a process killed mid-run stops the
other with a clear message, leaves only whole batches behind, and `--resume` completes the run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--data", "easy-vqa", "--bare-prompt", "--batch-size", "4", "--max-new-tokens", "4",
        "--method", "hilo", "--keep", "0.25"]
RUN = "hilo_keep0.25"


def _env(devices: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jaxprune(args, devices=2, **popen):
    return subprocess.Popen([sys.executable, "-m", "jax_pruning.cli", "eval", *args], cwd=REPO, env=_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen)


def _distributed(out: Path, limit: int, *extra) -> list[subprocess.Popen]:
    port = _port()
    return [_jaxprune([*ARGS, "--limit", str(limit), "--out", str(out), "--distributed", "--heartbeat-timeout", "5",
                       "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i), *extra])
            for i in range(2)]


def _predictions(out: Path) -> dict:
    lines = (out / RUN / "predictions.jsonl").read_text().splitlines()
    return {r["id"]: r["prediction"] for r in map(json.loads, lines)}


def _finish(procs, timeout=400):
    results = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, err) for p, (_, err) in zip(procs, results)]


def test_two_processes_equal_one_and_survive_a_kill(tmp_path):
    single = _jaxprune([*ARGS, "--limit", "24", "--out", str(tmp_path / "single")], devices=4)
    _, err = single.communicate(timeout=400)
    assert single.returncode == 0, err[-3000:]
    want = _predictions(tmp_path / "single")
    assert len(want) == 24

    # 2 processes x 2 devices: one SPMD program over 4 devices, process 0 writes
    for rc, err in _finish(_distributed(tmp_path / "two", 8)):
        assert rc == 0, err[-3000:]
    got = _predictions(tmp_path / "two")
    assert got == {k: want[k] for k in got} and len(got) == 8
    summary = json.loads((tmp_path / "two" / RUN / "summary.json").read_text())
    assert summary["devices"]["count"] == 4 and summary["devices"]["processes"] == 2

    # kill process 1 once a batch is on disk: process 0 must stop, non-zero, saying what happened
    out = tmp_path / "killed"
    procs = _distributed(out, 24)
    pred = out / RUN / "predictions.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (pred.is_file() and pred.read_text().count("\n") >= 4):
        assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(procs[1].pid, signal.SIGKILL)  # process 1: its supervisor and its worker
    (rc0, err0), (rc1, _) = _finish(procs, timeout=200)
    assert rc0 != 0 and rc1 != 0
    assert "process 0 was stopped" in err0 and "--resume" in err0, err0[-3000:]
    lines = pred.read_text().splitlines()
    assert len(lines) % 4 == 0 and len(lines) < 24  # whole batches only
    partial = _predictions(out)
    assert partial == {k: want[k] for k in partial}

    # --resume on both processes completes the run; everything equals the 1-process run
    for rc, err in _finish(_distributed(out, 24, "--resume")):
        assert rc == 0, err[-3000:]
    assert _predictions(out) == want
