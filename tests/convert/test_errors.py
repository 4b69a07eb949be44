"""Bad checkpoints fail clearly, before anything is written; a killed conversion leaves nothing that loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import models
from convert import ConversionError, convert_checkpoint
from convert.safetensors_io import SafetensorsReader
from tests.convert.tiny import hf_text_model, rewrite_single_file, save, set_model_type

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save(hf_text_model("llama"), tmp_path_factory.mktemp("llama") / "hf")


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _nothing_at(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*")), "temp folder left behind"
    with pytest.raises(FileNotFoundError):
        models.load(out)


def test_all_key_problems_in_one_error(llama_dir, tmp_path):
    hf_dir = _copy(llama_dir, tmp_path / "hf")

    def damage(t):
        del t["model.layers.1.mlp.up_proj.weight"]  # missing
        t["model.layers.0.self_attn.q_norm.weight"] = np.ones(8, np.float32)  # rule exists, param does not
        t["model.vision.extra.weight"] = np.ones(2, np.float32)  # no rule at all
        t["model.layers.0.self_attn.k_proj.weight"] = np.ones((8, 32), np.float32)  # should be [16, 32]
        return t

    rewrite_single_file(hf_dir, damage)
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(hf_dir, out, progress=False)
    err = info.value
    assert err.missing == ["layers/1/mlp/up_proj/kernel"]
    assert len(err.unexpected) == 2
    assert list(err.mismatched) == ["layers/0/self_attn/k_proj/kernel"]
    for name in ("layers/1/mlp/up_proj/kernel", "model.layers.0.self_attn.q_norm.weight", "model.vision.extra.weight",
                 "model.layers.0.self_attn.k_proj.weight", "(32, 8) != (32, 16)"):
        assert name in str(err)
    _nothing_at(out)


def test_truncated_file_is_named(llama_dir, tmp_path):
    hf_dir = _copy(llama_dir, tmp_path / "hf")
    file = hf_dir / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-100])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"model\.safetensors: truncated: tensor '.*' ends at byte"):
        convert_checkpoint(hf_dir, out, progress=False)
    _nothing_at(out)
    file.write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match="not a safetensors file"):
        SafetensorsReader(hf_dir)


def test_missing_shard_and_missing_weights(tmp_path):
    hf_dir = save(hf_text_model("qwen2"), tmp_path / "hf", max_shard_size="20KB")
    victim = sorted(hf_dir.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        SafetensorsReader(hf_dir)
    for f in hf_dir.glob("model*"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor"):
        SafetensorsReader(hf_dir)


def test_unsupported_model_type(llama_dir, tmp_path):
    hf_dir = _copy(llama_dir, tmp_path / "hf")
    set_model_type(hf_dir, "gpt2")
    with pytest.raises(ValueError, match="gpt2.*supported: llama, llava_next, mistral, qwen2"):
        convert_checkpoint(hf_dir, tmp_path / "out", progress=False)
    _nothing_at(tmp_path / "out")


def test_wrong_family_for_the_weights(llama_dir, tmp_path):
    """A Llama checkpoint declared as qwen2: the q/k/v biases Qwen2 needs are missing."""
    hf_dir = _copy(llama_dir, tmp_path / "hf")
    set_model_type(hf_dir, "qwen2")
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(hf_dir, tmp_path / "out", progress=False)
    assert "layers/0/self_attn/q_proj/bias" in info.value.missing
    assert len(info.value.missing) == 2 * 3  # 2 layers x q/k/v bias


def test_exception_midway_leaves_nothing(llama_dir, tmp_path, monkeypatch):
    calls = []
    original = SafetensorsReader.read

    def failing_read(self, key):
        calls.append(key)
        if len(calls) == 10:
            raise RuntimeError("disk on fire")
        return original(self, key)

    monkeypatch.setattr(SafetensorsReader, "read", failing_read)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert_checkpoint(llama_dir, out, progress=False)
    _nothing_at(out)


_KILLED_CHILD = textwrap.dedent(
    """
    import sys, time
    import convert.checkpoint as ck
    from convert import main

    original = ck.save_params_streaming

    def stalling(params_dir, tensors, group_bytes):
        def gen():
            for i, item in enumerate(tensors):
                if i == 8:  # several Orbax partial saves are on disk by now
                    open(sys.argv[3], "w").close()
                    time.sleep(120)
                yield item
        return original(params_dir, gen(), 1)

    ck.save_params_streaming = stalling
    sys.exit(main([sys.argv[1], sys.argv[2], "--quiet"]))
    """
)


def test_sigkill_midway_leaves_nothing_that_loads(llama_dir, tmp_path):
    out, signal_file = tmp_path / "out", tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(llama_dir), str(out), str(signal_file)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 90
        while not signal_file.exists():
            assert child.poll() is None, "conversion child exited early"
            assert time.monotonic() < deadline, "conversion child never reached the middle"
            time.sleep(0.05)
        temps = list(tmp_path.glob(".out.converting-*"))
        assert len(temps) == 1 and any(temps[0].rglob("*")), "expected a half-written temp folder"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        models.load(out)
    with pytest.raises(ValueError, match="not a converted checkpoint"):
        from convert.checkpoint import read_params

        read_params(temps[0])
    # The next conversion to the same place succeeds and sweeps the dead writer's temp folder.
    convert_checkpoint(llama_dir, out, progress=False)
    assert models.load(out).config.model_type == "llama"
    assert not list(tmp_path.glob(".out.converting-*"))
