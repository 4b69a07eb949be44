"""Conversion benchmark: time and peak RSS of converting a synthetic sharded float32 checkpoint (>= 2 GiB).

The checkpoint is Llama-shaped (tests/convert/test_memory.py's `write_big_checkpoint`,
one shard in memory at a time); the conversion runs in a fresh subprocess
(the same measuring script as that test), which reports its RSS baseline after
imports, its peak (VmHWM) and the seconds `convert.convert_checkpoint` took.

    python benchmarks/conversion.py [--layers 9] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import report  # noqa: E402
from tests.convert.test_memory import _MEASURE, write_big_checkpoint  # noqa: E402


def measure(layers: int, vocab: int | None, workdir: Path | None) -> dict:
    """Write the checkpoint, convert it in a subprocess; figures in bytes and seconds."""
    folder = Path(tempfile.mkdtemp(prefix="conversion-bench-", dir=workdir))
    try:
        start = time.perf_counter()
        kwargs = {} if vocab is None else {"vocab": vocab}
        total, largest = write_big_checkpoint(folder / "hf", layers=layers, **kwargs)
        write_seconds = time.perf_counter() - start
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   JAX_PLATFORMS="cpu")
        result = subprocess.run([sys.executable, "-c", _MEASURE, str(folder / "hf"), str(folder / "out")],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"conversion failed:\n{result.stderr[-3000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        out_bytes = sum(f.stat().st_size for f in (folder / "out").rglob("*") if f.is_file())
        return {"checkpoint_bytes": total, "largest_tensor_bytes": largest, "layers": layers,
                "write_seconds": write_seconds, "seconds": figures["seconds"],
                "baseline_rss_bytes": figures["baseline"], "peak_rss_bytes": figures["peak"],
                "peak_over_baseline_bytes": figures["peak"] - figures["baseline"], "output_bytes": out_bytes}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=9, help="9 layers: 2.26 GB (2.1 GiB)")
    parser.add_argument("--vocab", type=int, default=None, help="default: the test's 32000")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary checkpoint goes")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/<machine>)")
    args = parser.parse_args(argv)
    settings = {"load_start": report.loadavg()}
    result = measure(args.layers, args.vocab, args.workdir)
    settings["load_end"] = report.loadavg()
    payload = {"settings": settings, "result": result}
    folder = report.write("conversion", payload, report.conversion_markdown, args.out)
    print(report.conversion_markdown(payload))
    print("results in", folder)
    return payload


if __name__ == "__main__":
    main()
