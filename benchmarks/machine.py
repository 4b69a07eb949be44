"""Name the machine a benchmark ran on: CPU model, core count, GPU (if any)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def describe() -> dict:
    """{'cpu': ..., 'cores': ..., 'gpus': [...], 'slug': 'amd-epyc-2c'} (slug names results folders)."""
    cpu, cores, gpus = cpu_model(), os.cpu_count() or 1, gpu_names()
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40] + f"-{cores}c"
    if gpus:
        slug += "-" + re.sub(r"[^a-z0-9]+", "-", gpus[0].lower()).strip("-")[:30]
    return {"cpu": cpu, "cores": cores, "gpus": gpus, "slug": slug,
            "python": platform.python_version(), "system": platform.platform()}


if __name__ == "__main__":
    print(describe())
