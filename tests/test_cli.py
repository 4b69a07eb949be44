"""Smoke tests of the installed `jaxprune` command: help texts and the demo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = ["convert", "generate", "eval", "bench", "demo"]
SCRIPT = Path(sys.executable).parent / "jaxprune"  # installed by `pip install -e .`


def _run(*args, timeout=120, cwd=None):
    assert SCRIPT.exists(), f"the jaxprune entry point is not installed at {SCRIPT}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd or Path(__file__).resolve().parents[1])


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


def test_demo_runs_with_no_arguments(tmp_path):
    result = _run("demo", timeout=900, cwd=tmp_path)  # writes ./jaxprune-demo
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("tiny_llava_next", "tiny_qwen2_vl"):
        assert f"## {name}" in result.stdout
        assert (tmp_path / "jaxprune-demo" / name / "sweep.md").is_file()
        assert (tmp_path / "jaxprune-demo" / name / "report.html").is_file()
    assert list((tmp_path / "jaxprune-demo").rglob("*.png")), "no plots written"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random LLaVA-NeXT with its processor files, and a test image."""
    from tests.models import llava_tiny as lt
    from tests.tiny_folder import llava_folder

    folder = llava_folder(tmp_path_factory.mktemp("tiny_llava"))
    image = folder / "image.png"
    lt.test_images(("square",))[0].save(image)
    return folder, image


def test_generate_prints_an_answer_and_the_pruning(tiny_folder):
    folder, image = tiny_folder
    result = _run("generate", "--model", str(folder), "--image", str(image), "--prompt", "w1 w2",
                  "--method", "hilo", "--keep", "0.25", "--option", "removal_layer=1", "--max-new-tokens", "3",
                  "--show-kept", str(folder / "kept.png"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "no answer printed"
    assert "[hilo keep=0.25] visual tokens" in result.stderr
    from PIL import Image

    with Image.open(folder / "kept.png") as png:  # base and tile panels side by side
        assert png.width > png.height > 0


def test_bench_prints_a_side_by_side_table(tiny_folder):
    folder, _ = tiny_folder
    result = _run("bench", "--model", str(folder), "--method", "mr_pruner", "--keep", "0.1", "--repeats", "1",
                  "--batch-size", "2", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| method") and len(lines) == 3  # header, none, mr_pruner
    assert "| mr_pruner | 0.10 |" in result.stdout


def test_bad_method_is_a_clear_error(tiny_folder):
    folder, image = tiny_folder
    result = _run("generate", "--model", str(folder), "--image", str(image), "--prompt", "w1",
                  "--method", "nope", timeout=300)
    assert result.returncode == 2 and "unknown pruning method 'nope'" in result.stderr
