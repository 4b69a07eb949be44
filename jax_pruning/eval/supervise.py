"""`jaxprune eval --distributed` runs its work in a child process and explains how it ended.

When one process of a jax.distributed run dies, the JAX coordination service
stops the others from C++ (SIGABRT after `--heartbeat-timeout` seconds), which
no Python handler can catch. The parent stays outside that: it waits for the
worker and, if it did not finish, prints one clear line — which process, how it
ended, what is saved and how to finish — and exits non-zero.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

WORKER_ENV = "JAXPRUNE_DISTRIBUTED_WORKER"


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def _how(rc: int) -> str:
    if rc < 0:
        name = signal.Signals(-rc).name
        if -rc == signal.SIGABRT:
            return (f"was stopped ({name}) by the JAX distributed service: another process failed or stopped "
                    f"responding (see its output)")
        return f"was killed by {name}"
    return f"failed with exit code {rc}"


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL if this supervisor dies, so no orphan keeps the run's devices."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_supervised(argv: list[str], out: str, process_id: int | None) -> int:
    """Run `jaxprune <argv>` as the worker; 0 when it finished, 1 otherwise (with the message)."""
    env = dict(os.environ, **{WORKER_ENV: "1"})
    child = subprocess.Popen([sys.executable, "-m", "jax_pruning.cli", *argv], env=env, preexec_fn=_die_with_parent)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if rc == 0:
        return 0
    who = "this process" if process_id is None else f"process {process_id}"
    print(f"jaxprune eval --distributed: {who} {_how(rc)}. The run stopped; every finished batch is in "
          f"{out}/<run>/predictions.jsonl (nothing half-written). Run the same command with --resume on every "
          f"process to complete it.", file=sys.stderr)
    return 1
