"""Smoke tests of the installed `jaxprune` command: help texts and the demo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = ["convert", "generate", "eval", "bench", "demo"]
SCRIPT = Path(sys.executable).parent / "jaxprune"  # installed by `pip install -e .`


def _run(*args, timeout=120):
    assert SCRIPT.exists(), f"the jaxprune entry point is not installed at {SCRIPT}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=Path(__file__).resolve().parents[1])


def test_top_level_help_lists_every_subcommand():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name):
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: jaxprune " + name)


def test_unknown_subcommand_fails_with_usage():
    result = _run("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_demo_runs_with_no_arguments():
    result = _run("demo", timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
