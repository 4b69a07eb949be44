"""Fault injection for the safetensors files of a Hugging Face checkpoint folder (a tiny random Llama saved
with save_pretrained, one file and sharded with an index), through every entry point that reads them:
`models.load(path)`, `models.load(path, mesh=...)`, `convert_checkpoint` (then loading its output), and the
command lines `jaxprune convert` / `python -m convert` (in process; one real subprocess).

Outcome classes:
  (a) refused: a ValueError / FileNotFoundError (ConversionError for tensors that do not fit the model) whose
      message names the file, and the tensor where one is at fault; nothing is written at OUT_DIR; the CLIs
      exit 2 with the message on stderr, no traceback;
  (c) correct: harmless damage (metadata, whitespace, a stale total_size, a float16 tensor) loads to exactly
      the intact model's params (an independent HF-name -> Flax-path table, tests/convert/reference.py).
Never a bare struct / JSON / NumPy / Unicode error, never a silently wrong model.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import models
from convert import ConversionError, convert_checkpoint
from convert.cli import main as convert_main
from jax_pruning import cli
from jax_pruning.parallel import make_mesh
from tests.convert.reference import assert_same_params, reference_text_params
from tests.convert.test_load import model_params
from tests.convert.tiny import hf_text_model, save, state_dict_np

REPO = Path(__file__).resolve().parents[2]
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
K, V = "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"  # both [16, 32] F32
UP = "model.layers.1.mlp.up_proj.weight"
CLEAR = (ValueError, ConversionError, FileNotFoundError)  # exact types: JSONDecodeError & co. are refused


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    hf = hf_text_model("llama", seed=3)
    single = save(hf, root / "single")
    sharded = save(hf, root / "sharded", max_shard_size="20KB")
    assert len(list(sharded.glob("model-*.safetensors"))) >= 3
    return SimpleNamespace(single=single, sharded=sharded, want=reference_text_params(state_dict_np(hf)))


# ---------------------------------------------------------------- file surgery


def _split(file: Path) -> tuple[dict, bytes, int]:
    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:], n


def _join(file: Path, header: dict | None, data: bytes, raw_header: bytes | None = None) -> None:
    body = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    file.write_bytes(struct.pack("<Q", len(body)) + body + data)


def _edit_header(file: Path, edit) -> None:
    header, data, _ = _split(file)
    edit(header)
    _join(file, header, data)


def _edit_tensors(file: Path, edit) -> None:
    tensors = edit(dict(load_file(file)))
    file.unlink()
    save_file(tensors, file, metadata={"format": "pt"})


def _shard_of(folder: Path, key: str) -> Path:
    return folder / json.loads((folder / INDEX).read_text())["weight_map"][key]


def _edit_index(folder: Path, edit) -> None:
    index = json.loads((folder / INDEX).read_text())
    edit(index)
    (folder / INDEX).write_text(json.dumps(index))


# ---------------------------------------------------------------- entry points and outcome checks


def _load(folder, out):
    return models.load(folder)


def _load_mesh(folder, out):
    return models.load(folder, mesh=make_mesh())


def _convert(folder, out):
    convert_checkpoint(folder, out, progress=False)
    return models.load(out)


ENTRIES = {"models.load": _load, "models.load(mesh)": _load_mesh, "convert_checkpoint": _convert}


def _nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} written for a bad checkpoint"
    assert not list(out.parent.glob(f".{out.name}.*")), "temp folder left behind"


def _assert_refused(folder: Path, tmp_path: Path, capsys, names: list[str]) -> None:
    """Every entry point refuses with a clear error whose message contains every one of `names`."""
    for i, (entry, call) in enumerate(ENTRIES.items()):
        out = tmp_path / f"out{i}"
        with pytest.raises(Exception) as info:
            call(folder, out)
        err = info.value
        assert type(err) in CLEAR, f"{entry}: {type(err).__module__}.{type(err).__name__}: {err}"
        for name in names:
            assert name in str(err), f"{entry}: {name!r} not in message:\n{err}"
        _nothing_written(out)
    for prog, run, prefix in (("jaxprune convert", lambda a: cli.main(["convert", *a]), "jaxprune convert: "),
                              ("python -m convert", lambda a: convert_main([*a, "--quiet"]), "error: ")):
        out = tmp_path / "out-cli"
        capsys.readouterr()
        assert run([str(folder), str(out)]) == 2, prog
        stderr = capsys.readouterr().err
        lines = stderr.rstrip("\n").splitlines()
        assert lines and lines[0].startswith(prefix) and "Traceback" not in stderr, f"{prog}:\n{stderr}"
        # one line; a ConversionError goes on with its indented list of every problem
        assert all(line.startswith("  ") for line in lines[1:]), f"{prog}:\n{stderr}"
        for name in names:
            assert name in stderr, f"{prog}: {name!r} not on stderr:\n{stderr}"
        _nothing_written(out)


def _assert_correct(folder: Path, tmp_path: Path, want: dict) -> None:
    for i, (entry, call) in enumerate(ENTRIES.items()):
        model = call(folder, tmp_path / f"out{i}")
        got = {k: np.asarray(v) for k, v in model_params(model).items()}
        assert_same_params(got, want)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- single-file damage: refused, naming file (+ tensor)


def _truncate_at(where):
    def mutate(folder):
        file = folder / SINGLE
        _, _, n = _split(file)
        size = file.stat().st_size
        file.write_bytes(file.read_bytes()[:where(n, size)])
        return [str(file)] + (["truncated: tensor '"] if where(n, size) >= 8 + n else [])
    return mutate


TRUNCATIONS = {  # (header length n, file size) -> cut at
    "empty": lambda n, s: 0, "in-length-3": lambda n, s: 3, "in-length-7": lambda n, s: 7,
    "after-length": lambda n, s: 8, "mid-json": lambda n, s: 8 + n // 2, "json-minus-1": lambda n, s: 8 + n - 1,
    "no-data": lambda n, s: 8 + n, "first-tensor": lambda n, s: 8 + n + 5, "mid-data": lambda n, s: (8 + n + s) // 2,
    "last-byte": lambda n, s: s - 1,
}


def _raw_header(raw: bytes):
    def mutate(folder):
        file = folder / SINGLE
        _, data, _ = _split(file)
        _join(file, None, data, raw_header=raw)
        return [str(file), "header"]
    return mutate


def _length_field(value):
    def mutate(folder):
        file = folder / SINGLE
        raw = file.read_bytes()
        file.write_bytes(struct.pack("<Q", value) + raw[8:])
        return [str(file), "header"]
    return mutate


def _duplicate_key(folder):
    file = folder / SINGLE
    header, data, _ = _split(file)
    text = json.dumps(header, separators=(",", ":"))
    # K a second time with V's bytes: json.loads alone keeps the last one, so K would silently get V's weights
    text = text[:-1] + "," + json.dumps(K) + ":" + json.dumps(header[V], separators=(",", ":")) + "}"
    _join(file, None, data, raw_header=text.encode())
    return [str(file), repr(K), "appears twice"]


def _entry(key, **changes):
    def mutate(folder):
        file = folder / SINGLE
        _edit_header(file, lambda h: h[key].update(changes))
        return [str(file), repr(key)]
    return mutate


def _offsets(key, shift):
    def mutate(folder):
        file = folder / SINGLE
        size = file.stat().st_size

        def edit(h):
            begin, end = h[key]["data_offsets"]
            h[key]["data_offsets"] = shift(begin, end, size, h)
        _edit_header(file, edit)
        return [str(file), repr(key)]
    return mutate


def _overlap_with(other):
    return lambda b, e, s, h: list(h[other]["data_offsets"])


def _retyped(key, code, name):
    """Same byte count, another dtype: passes every header check, so only the model's dtype can refuse it."""
    def mutate(folder):
        _edit_header(folder / SINGLE, lambda h: h[key].update(dtype=code))
        return [str(folder), f"{key} in {SINGLE}: {name}", "wrong dtype"]
    return mutate


def _replace_entry(key, value):
    def mutate(folder):
        file = folder / SINGLE
        _edit_header(file, lambda h: h.__setitem__(key, value))
        return [str(file), repr(key)]
    return mutate


def _drop_field(key, field):
    def mutate(folder):
        file = folder / SINGLE
        _edit_header(file, lambda h: h[key].pop(field))
        return [str(file), repr(key), field]
    return mutate


def _tensors(edit, names):
    def mutate(folder):
        _edit_tensors(folder / SINGLE, edit)
        return [str(folder)] + names
    return mutate


def _set(key, value):
    def edit(t):
        t[key] = value
        return t
    return edit


def _drop(key):
    def edit(t):
        del t[key]
        return t
    return edit


SINGLE_CASES = {
    **{f"truncated-{name}": _truncate_at(where) for name, where in TRUNCATIONS.items()},
    # corrupt header
    "header-not-json": _raw_header(b"{not json at all" + b" " * 40),
    "header-not-utf8": _raw_header(b'{"\xff\xfe": 1}'),
    "header-a-list": _raw_header(b"[]      "),
    "header-null": _raw_header(b"null    "),
    "header-empty": _raw_header(b""),
    "header-deeply-nested": _raw_header(b"[" * 100_000),
    "header-length-past-eof": _length_field(10**6),
    "header-length-2^64-1": _length_field(2**64 - 1),
    "header-length-short": _length_field(16),
    "header-duplicate-key": _duplicate_key,
    "offsets-past-eof": _offsets(K, lambda b, e, s, h: [s, s + e - b]),
    "offsets-overlap-exactly": _offsets(V, _overlap_with(K)),
    "offsets-overlap-partly": _offsets(K, lambda b, e, s, h: [b + 4, e + 4]),
    "offsets-reversed": _offsets(K, lambda b, e, s, h: [e, b]),
    "offsets-negative": _offsets(K, lambda b, e, s, h: [-8, e - b - 8]),
    "offsets-floats": _offsets(K, lambda b, e, s, h: [float(b), float(e)]),
    "offsets-bools": _offsets(K, lambda b, e, s, h: [False, True]),
    "offsets-strings": _offsets(K, lambda b, e, s, h: [str(b), str(e)]),
    "offsets-three": _offsets(K, lambda b, e, s, h: [b, e, e]),
    "offsets-not-a-list": _offsets(K, lambda b, e, s, h: b),
    "shape-negative": _entry(K, shape=[-16, -32]),  # same element count: numpy's "negative dimensions"
    "shape-strings": _entry(K, shape=["16", "32"]),
    "shape-float": _entry(K, shape=[16.0, 32]),
    "shape-not-a-list": _entry(K, shape=512),
    "shape-too-many-bytes": _entry(K, shape=[16, 64]),
    "entry-a-number": _replace_entry(K, 3),
    "entry-a-list": _replace_entry(K, ["F32", [16, 32]]),
    "entry-no-dtype": _drop_field(K, "dtype"),
    "entry-no-offsets": _drop_field(K, "data_offsets"),
    # wrong dtype: unknown strings, and integers / bools where the model needs floats
    "dtype-unknown": _entry(K, dtype="Q4_K"),
    "dtype-lowercase": _entry(K, dtype="f32"),
    "dtype-a-number": _entry(K, dtype=32),
    "dtype-I32-same-bytes": _retyped(K, "I32", "int32"),
    "dtype-U32-same-bytes": _retyped(K, "U32", "uint32"),
    "dtype-int-tensor": _tensors(_set(K, np.arange(16 * 32, dtype=np.int32).reshape(16, 32)), [K, "int32", SINGLE]),
    "dtype-bool-tensor": _tensors(_set(UP, np.ones((64, 32), bool)), [UP, "bool", SINGLE]),
    # tensors that do not fit config.json
    "mis-shaped-transposed": _tensors(_set(K, np.ones((32, 16), np.float32)), [K, SINGLE, "(16, 32) != (32, 16)"]),
    "mis-shaped-norm": _tensors(_set("model.norm.weight", np.ones(31, np.float32)),
                                ["model.norm.weight", SINGLE, "(31,) != (32,)"]),
    "mis-shaped-rank": _tensors(_set(K, np.ones(16 * 32, np.float32)), [K, SINGLE]),
    "missing-tensor": _tensors(_drop(UP), ["layers/1/mlp/up_proj/kernel", "missing"]),
    "missing-embedding": _tensors(_drop("model.embed_tokens.weight"), ["embed_tokens/embedding", "missing"]),
    "extra-tensor-no-rule": _tensors(_set("model.vision.extra.weight", np.ones(2, np.float32)),
                                     ["model.vision.extra.weight", SINGLE, "no rule"]),
    "extra-tensor-no-param": _tensors(_set("model.layers.2.mlp.up_proj.weight", np.ones((64, 32), np.float32)),
                                      ["model.layers.2.mlp.up_proj.weight", SINGLE, "no such param"]),
}


@pytest.mark.parametrize("case", list(SINGLE_CASES))
def test_damaged_single_file_is_refused_naming_it(pristine, tmp_path, capsys, case):
    folder = _copy(pristine.single, tmp_path / "hf")
    names = SINGLE_CASES[case](folder)
    _assert_refused(folder, tmp_path, capsys, names)


# ---------------------------------------------------------------- sharded damage: refused, naming the index or shard


def _missing_shard(folder):
    shard = _shard_of(folder, UP)
    shard.unlink()
    return [str(folder / INDEX), shard.name, "do not exist"]


def _index_points_elsewhere(name):
    def mutate(folder):
        _edit_index(folder, lambda i: i["weight_map"].__setitem__(UP, name))
        return [str(folder / INDEX)] + ([name] if isinstance(name, str) and name else [])
    return mutate


def _index_raw(raw: bytes):
    def mutate(folder):
        (folder / INDEX).write_bytes(raw)
        return [str(folder / INDEX)]
    return mutate


def _index_edit(edit, extra=()):
    def mutate(folder):
        _edit_index(folder, edit)
        return [str(folder / INDEX), *extra]
    return mutate


def _index_wrong_shard(folder):
    other = next(f for f in sorted(folder.glob("model-*.safetensors")) if f != _shard_of(folder, UP))
    _edit_index(folder, lambda i: i["weight_map"].__setitem__(UP, other.name))
    return [str(folder / INDEX), UP, "disagrees"]


def _in_two_shards(folder):
    shard = _shard_of(folder, UP)
    other = next(f for f in sorted(folder.glob("model-*.safetensors")) if f != shard)
    _edit_tensors(other, _set(UP, load_file(shard)[UP]))
    return [str(folder), repr(UP), shard.name, other.name]


def _shard_surgery(key, damage):
    def mutate(folder):
        shard = _shard_of(folder, key)
        damage(shard)
        return [str(shard)]
    return mutate


def _cut_data(shard):
    shard.write_bytes(shard.read_bytes()[:-7])


def _bad_shard_header(shard):
    _, data, n = _split(shard)
    _join(shard, None, data, raw_header=b"{oops" + b" " * (n - 5))


def _overlap_in_shard(shard):
    header, data, _ = _split(shard)
    keys = [k for k in header if k != "__metadata__"]
    a = next(k for k in keys if header[k]["shape"] == header[UP]["shape"] and k != UP) if len(keys) > 1 else None
    if a is None:  # UP alone in its shard: make another tensor share its bytes
        header["model.layers.1.mlp.gate_proj.weight"] = dict(header[UP])
    else:
        header[a]["data_offsets"] = list(header[UP]["data_offsets"])
    _join(shard, header, data)


SHARDED_CASES = {
    "missing-shard": _missing_shard,
    "index-names-a-nonexistent-file": _index_points_elsewhere("model-00099-of-00007.safetensors"),
    "index-names-a-folder-path": _index_points_elsewhere("../single/model.safetensors"),
    "index-names-an-absolute-path": _index_points_elsewhere("/etc/hostname"),
    "index-names-a-number": _index_points_elsewhere(7),
    "index-names-empty": _index_points_elsewhere(""),
    "index-not-json": _index_raw(b'{"weight_map": '),
    "index-not-utf8": _index_raw(b'{"weight_map": {"\xff": 1}}'),
    "index-a-list": _index_raw(b"[]"),
    "index-without-weight-map": _index_edit(lambda i: i.pop("weight_map"), ["no weight_map"]),
    "index-weight-map-a-list": _index_edit(lambda i: i.__setitem__("weight_map", list(i["weight_map"]))),
    "index-names-the-wrong-shard": _index_wrong_shard,
    "index-lacks-a-tensor": _index_edit(lambda i: i["weight_map"].pop(UP), [UP, "not listed"]),
    "tensor-in-two-shards": _in_two_shards,
    "shard-truncated": _shard_surgery(UP, _cut_data),
    "shard-corrupt-header": _shard_surgery(UP, _bad_shard_header),
    "shard-overlapping-offsets": _shard_surgery(UP, _overlap_in_shard),
}


@pytest.mark.parametrize("case", list(SHARDED_CASES))
def test_damaged_sharded_checkpoint_is_refused_naming_the_file(pristine, tmp_path, capsys, case):
    folder = _copy(pristine.sharded, tmp_path / "hf")
    names = SHARDED_CASES[case](folder)
    _assert_refused(folder, tmp_path, capsys, names)


# ---------------------------------------------------------------- harmless changes: the exact model


def _f16_tensor(pristine):
    def mutate(folder):
        _edit_tensors(folder / SINGLE, lambda t: {**t, K: t[K].astype(np.float16)})
    want = dict(pristine.want)
    path = "layers/0/self_attn/k_proj/kernel"
    want[path] = want[path].astype(np.float16).astype(np.float32)
    return mutate, want


HARMLESS = {
    "metadata-changed": lambda f: _edit_header(f / SINGLE, lambda h: h.__setitem__("__metadata__", {"a": "b"})),
    "metadata-a-list": lambda f: _edit_header(f / SINGLE, lambda h: h.__setitem__("__metadata__", [1, 2])),
    "metadata-absent": lambda f: _edit_header(f / SINGLE, lambda h: h.pop("__metadata__", None)),
    "header-whitespace": lambda f: _join(f / SINGLE, None, _split(f / SINGLE)[1],
                                         raw_header=b"\n\t " + json.dumps(_split(f / SINGLE)[0]).encode() + b" \n"),
    "header-key-order": lambda f: _edit_header(f / SINGLE, lambda h: [h.__setitem__(k, h.pop(k))
                                                                      for k in sorted(h, reverse=True)]),
}


@pytest.mark.parametrize("case", [*HARMLESS, "float16-tensor", "sharded-stale-total-size"])
def test_harmless_changes_load_the_exact_model(pristine, tmp_path, case):
    want = pristine.want
    if case == "sharded-stale-total-size":
        folder = _copy(pristine.sharded, tmp_path / "hf")
        _edit_index(folder, lambda i: i.__setitem__("metadata", {"total_size": 1}))
    else:
        folder = _copy(pristine.single, tmp_path / "hf")
        if case == "float16-tensor":
            mutate, want = _f16_tensor(pristine)
            mutate(folder)
        else:
            HARMLESS[case](folder)
    _assert_correct(folder, tmp_path, want)


def test_converted_folder_with_an_integer_param_is_refused_naming_it(pristine, tmp_path):
    """What an older converter wrote for an integer tensor (it let them through): loading names the folder and
    the param instead of building a model with integer weights."""
    from convert.checkpoint import read_manifest, read_params, write_converted

    good = convert_checkpoint(pristine.single, tmp_path / "good", progress=False)
    flat = read_params(good)
    flat["layers/0/self_attn/k_proj/kernel"] = flat["layers/0/self_attn/k_proj/kernel"].astype(np.int32)
    bad = write_converted(tmp_path / "bad", flat.items(), good / "config.json",
                          json.loads((good / "model_config.json").read_text()), read_manifest(good))
    for call in (lambda: models.load(bad), lambda: models.load(bad, mesh=make_mesh())):
        with pytest.raises(ValueError, match="wrong dtype: layers/0/self_attn/k_proj/kernel: got int32") as info:
            call()
        assert type(info.value) is ValueError and str(bad) in str(info.value) and "convert it again" in str(info.value)


# ---------------------------------------------------------------- random damage (hypothesis)


@pytest.fixture(scope="module")
def scratch(pristine, tmp_path_factory):
    """One copy per module, restored byte for byte after each example."""
    root = tmp_path_factory.mktemp("scratch")
    return SimpleNamespace(single=_copy(pristine.single, root / "single"),
                           sharded=_copy(pristine.sharded, root / "sharded"), root=root)


def _refused_or_exact(folder: Path, out: Path, file: Path, want: dict, entries=("models.load", "convert_checkpoint")):
    for entry in entries:
        shutil.rmtree(out, ignore_errors=True)
        try:
            model = ENTRIES[entry](folder, out)
        except CLEAR as err:
            assert type(err) in CLEAR, f"{entry}: {type(err).__name__}: {err}"
            assert str(file) in str(err) or (type(err) is ConversionError and str(folder) in str(err)), \
                f"{entry}: {file} not named:\n{err}"
            assert not out.exists()
            continue
        assert_same_params({k: np.asarray(v) for k, v in model_params(model).items()}, want)


@settings(max_examples=25, deadline=None)
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_any_truncation_is_named(pristine, scratch, fraction):
    file = scratch.single / SINGLE
    original = (pristine.single / SINGLE).read_bytes()
    cut = int(fraction * len(original))
    try:
        file.write_bytes(original[:cut])
        for call in (_load, _load_mesh, _convert):
            with pytest.raises(ValueError) as info:
                call(scratch.single, scratch.root / "out")
            assert type(info.value) is ValueError and str(file) in str(info.value), info.value
            assert not (scratch.root / "out").exists()
    finally:
        file.write_bytes(original)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_header_byte_flip_is_named_or_harmless(pristine, scratch, data):
    """One byte of the length field or the JSON header replaced: refused naming the file, or the exact model.
    (A flip in the tensor bytes cannot be seen: safetensors has no checksums.)"""
    file = scratch.single / SINGLE
    original = (pristine.single / SINGLE).read_bytes()
    (n,) = struct.unpack("<Q", original[:8])
    position = data.draw(st.integers(0, 8 + n - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[position]), label="value")
    try:
        file.write_bytes(original[:position] + bytes([value]) + original[position + 1:])
        _refused_or_exact(scratch.single, scratch.root / "out", file, pristine.want)
    finally:
        file.write_bytes(original)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_index_byte_flip_is_named_or_harmless(pristine, scratch, data):
    file = scratch.sharded / INDEX
    original = (pristine.sharded / INDEX).read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[position]), label="value")
    try:
        file.write_bytes(original[:position] + bytes([value]) + original[position + 1:])
        _refused_or_exact(scratch.sharded, scratch.root / "out", file, pristine.want, entries=("models.load",))
    finally:
        file.write_bytes(original)


# ---------------------------------------------------------------- the real command line, once


def test_python_m_convert_in_a_subprocess_is_one_line_exit_2(pristine, tmp_path):
    folder = _copy(pristine.single, tmp_path / "hf")
    _entry(K, dtype="I32")(folder)
    _offsets(V, _overlap_with(K))(folder)
    result = subprocess.run([sys.executable, "-m", "convert", str(folder), str(tmp_path / "out"), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith(f"error: {folder / SINGLE}: corrupt safetensors header: tensors ")
    assert "overlap" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    _nothing_written(tmp_path / "out")
