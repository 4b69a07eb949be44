"""The processes that tests/faults/test_fault_kills.py SIGKILLs: the real command lines' `main(argv)`, forked
from a multiprocessing forkserver that imported jax, the converter and the CLI once (a fresh interpreter
spends seconds on imports per run; a forked child starts at once and runs the same code).

`run(kind, argv, log, kill_at, half, events, cache)` sends stdout / stderr to `log`, wraps the functions that
write files (below) so that each call is an event appended (numbered, named) to the `events` file, and runs
the command. kill_at=(prefix, n): at the n-th event whose name starts with `prefix` the process SIGKILLs
itself: before that write, or, with `half`, after writing the first half of what that call writes (a kill
landing mid-write). kill_at=None: never; the test may still SIGKILL it from outside after a random delay.

Events, `kind="eval"` (`jaxprune eval`): `append` (a batch of records to predictions.jsonl), `replace NAME`
(write_atomic moving a finished temp file into place: summaries, sweep files, plots), `savefig NAME`.
`kind="convert"` (`python -m convert`): `partial-save` (one Orbax group, saved with a small group size so
there are several), `finalize`, `copyfile NAME`, `write_text NAME`, `rename` / `exchange` (the final move;
the old folder aside first where renameat2 is missing).
"""

from __future__ import annotations

import os
import signal
import sys

PRELOAD = ["tests.faults.kill_child", "jax_pruning.cli", "jax_pruning.sweep", "jax_pruning.eval.datasets",
           "jax_pruning.eval.plots", "jax_pruning.processing", "models", "models.params", "convert",
           "convert.checkpoint", "orbax.checkpoint.experimental.v1", "tests.faults.kill_warmup"]

_count = 0
_matches = 0


def _event(name: str, kill_at, half: bool, events: str, partial=None) -> None:
    global _count, _matches
    _count += 1
    with open(events, "a") as fh:
        fh.write(f"{_count} {name}\n")
    if kill_at is not None and name.startswith(kill_at[0]):
        _matches += 1
        if _matches == kill_at[1]:
            if half and partial is not None:
                partial()
            os.kill(os.getpid(), signal.SIGKILL)


def _hook_eval(hook) -> None:
    import matplotlib.figure

    import jax_pruning.eval.records as records
    import jax_pruning.eval.runner as runner

    append = runner.append_records

    def hooked_append(fh, recs):
        recs = list(recs)
        text = "".join(records.to_json_line(r) for r in recs)

        def cut():
            fh.write(text[: len(text) // 2])
            fh.flush()
        hook("append", cut)
        append(fh, recs)

    runner.append_records = hooked_append

    real_replace = os.replace

    class _Os:  # records.os with a hooked replace; everything else is the os module
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            hook(f"replace {os.path.basename(dst)}")
            real_replace(src, dst)

    records.os = _Os()

    savefig = matplotlib.figure.Figure.savefig

    def hooked_savefig(self, fname, *args, **kwargs):
        name = os.path.basename(os.fspath(fname)) if isinstance(fname, (str, os.PathLike)) else "(in memory)"

        def cut():
            import io

            buffer = io.BytesIO()
            savefig(self, buffer, *args, **kwargs)
            data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
            if hasattr(fname, "write"):
                fname.write(data)
            else:
                with open(fname, "wb") as fh:
                    fh.write(data)
        hook(f"savefig {name}", cut)
        return savefig(self, fname, *args, **kwargs)

    matplotlib.figure.Figure.savefig = hooked_savefig


def _hook_convert(hook) -> None:
    import pathlib
    import shutil

    from orbax.checkpoint.experimental import v1 as ocp

    import convert.checkpoint as ck

    streaming = ck.save_params_streaming
    ck.save_params_streaming = lambda params_dir, tensors, group_bytes: streaming(params_dir, tensors, 16 << 10)

    partial_save, finalize = ocp.partial.save, ocp.partial.finalize

    def hooked_save(*args, **kwargs):
        hook("partial-save")
        return partial_save(*args, **kwargs)

    def hooked_finalize(*args, **kwargs):
        hook("finalize")
        return finalize(*args, **kwargs)

    ocp.partial.save, ocp.partial.finalize = hooked_save, hooked_finalize

    copyfile = shutil.copyfile

    def hooked_copyfile(src, dst, *args, **kwargs):
        def cut():
            data = pathlib.Path(src).read_bytes()
            pathlib.Path(dst).write_bytes(data[: len(data) // 2])
        hook(f"copyfile {os.path.basename(dst)}", cut)
        return copyfile(src, dst, *args, **kwargs)

    shutil.copyfile = hooked_copyfile

    write_text = pathlib.Path.write_text

    def hooked_write_text(self, data, *args, **kwargs):
        hook(f"write_text {self.name}", lambda: write_text(self, data[: len(data) // 2]))
        return write_text(self, data, *args, **kwargs)

    pathlib.Path.write_text = hooked_write_text

    exchange, rename, replace = ck._exchange, os.rename, os.replace

    def hooked_exchange(a, b):
        hook("exchange")
        return exchange(a, b)

    def hooked_rename(src, dst, *args, **kwargs):
        hook("rename")
        return rename(src, dst, *args, **kwargs)

    def hooked_replace(src, dst, *args, **kwargs):
        hook("rename")
        return replace(src, dst, *args, **kwargs)

    ck._exchange = hooked_exchange
    ck.os = type("_Os", (), {"__getattr__": lambda self, n: getattr(os, n), "rename": staticmethod(hooked_rename),
                             "replace": staticmethod(hooked_replace)})()


def run(kind: str, argv: list[str], log: str, kill_at: tuple[str, int] | None, half: bool, events: str,
        cache: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        import jax

        jax.config.update("jax_compilation_cache_dir", cache)  # every child compiles the same programs
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

        def hook(name, partial=None):
            _event(name, kill_at, half, events, partial)

        if kind == "eval":
            from jax_pruning import cli

            _hook_eval(hook)
            code = cli.main(argv)
        else:
            from convert.cli import main

            _hook_convert(hook)
            code = main(argv)
    except BaseException:  # noqa: BLE001 - the traceback goes to the log; the exit code says it failed
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
