"""Hostile and broken PyTorch files: nothing runs, everything ends in one clear line.

These tests need no torch: the archives are assembled here from pickle opcodes and zipfile, the
way an attacker would build them.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from initaudit.loaders import LoadOptions, detect_format, load
from initaudit.model import LoadError


# --------------------------------------------------------------------------------------------
# a tiny pickle assembler (protocol 2 opcodes)
# --------------------------------------------------------------------------------------------
def s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(value: int) -> bytes:
    return b"\x8a\x08" + value.to_bytes(8, "little", signed=True)


def g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(i(v) for v in values) + b"t"


def tensor(key: str, numel: int, size: tuple[int, ...], stride: tuple[int, ...], *,
           storage: str = "FloatStorage", offset: int = 0, legacy: bool = False) -> bytes:
    pid = b"(" + s("storage") + g("torch", storage) + s(key) + s("cpu") + i(numel)
    pid += (b"N" if legacy else b"") + b"t"
    return (g("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"Q" + i(offset) + ints(size)
            + ints(stride) + b"\x89" + g("collections", "OrderedDict") + b")R" + b"tR")


def state_dict(items: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(s(k) + v for k, v in items)
    return b"\x80\x02" + g("collections", "OrderedDict") + b")R(" + body + b"u."


def evil_call(sentinel: Path, module: str = "os", name: str = "system") -> bytes:
    return g(module, name) + b"(" + s(f"touch {sentinel}") + b"tR"


def torch_zip(path: Path, pkl: bytes, storages: dict[str, bytes], *, compress_data: bool = False,
              byteorder: str | None = "little") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        if byteorder:
            zf.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            method = zipfile.ZIP_DEFLATED if compress_data else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(f"archive/data/{key}"), data, compress_type=method)
        zf.writestr("archive/version", "3\n")
    return path


W = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
B = np.array([0.5, -1.0, 2.0], dtype=np.float32)
STORAGES = {"0": W.tobytes(), "1": B.tobytes()}
GOOD = [("fc.weight", tensor("0", 12, (3, 4), (4, 1))), ("fc.bias", tensor("1", 3, (3,), (1,)))]


def _assert_good_tensors(model) -> None:
    got = {t.name: np.asarray(t.load()) for t in model.tensors()}
    assert np.array_equal(got["fc.weight"], W)
    assert np.array_equal(got["fc.bias"], B)


def _unsafe_names(model) -> list[str]:
    return [u.what for u in model.unsafe]


def _one_line_error(path: Path, match: str | None = None) -> str:
    with pytest.raises(LoadError) as info:
        load(path)
    text = str(info.value)
    assert "\n" not in text and text
    if match:
        assert match in text, text
    return text


# --------------------------------------------------------------------------------------------
# code references are never run, always reported, and the rest is still read
# --------------------------------------------------------------------------------------------
def test_os_system_in_zip_state_dict_is_reported_not_run(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    pkl = state_dict(GOOD + [("evil", evil_call(sentinel))])
    path = torch_zip(tmp_path / "evil.pt", pkl, STORAGES)
    assert detect_format(path) == "pytorch-zip"
    model = load(path)
    assert not sentinel.exists()
    assert "pickle GLOBAL os.system" in _unsafe_names(model)
    assert model.unsafe[0].location == "archive/data.pkl"
    _assert_good_tensors(model)


class _Evil:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # the classic payload: pickle calls os.system on load
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_dumps_payload_as_raw_legacy_pickle(tmp_path: Path, protocol: int) -> None:
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"payload": _Evil(sentinel), "lr": 0.1}, protocol=protocol))
    assert detect_format(path) == "pytorch-legacy"
    model = load(path)
    assert not sentinel.exists()
    assert any(name.endswith(".system") and name.split()[-1].split(".")[0] in ("os", "posix")
               for name in _unsafe_names(model)), _unsafe_names(model)


def _legacy_file(path: Path, obj_pickle: bytes, storages: list[tuple[str, bytes, int]]) -> Path:
    """Hand-built pre-1.6 layout: magic, protocol, sys_info, object, keys, raw storages."""
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                          "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    keys = pickle.dumps([k for k, _, _ in storages], protocol=2)
    data = b"".join(struct.pack("<q", numel) + raw for _, raw, numel in storages)
    path.write_bytes(head + obj_pickle + keys + data)
    return path


def test_os_system_in_legacy_format_is_reported_and_rest_is_read(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    items = [("fc.weight", tensor("10", 12, (3, 4), (4, 1), legacy=True)),
             ("fc.bias", tensor("11", 3, (3,), (1,), legacy=True)),
             ("evil", evil_call(sentinel, "posix", "system"))]
    path = _legacy_file(tmp_path / "legacy.pt", state_dict(items),
                        [("10", W.tobytes(), 12), ("11", B.tobytes(), 3)])
    model = load(path)
    assert model.format == "pytorch-legacy"
    assert not sentinel.exists()
    assert "pickle GLOBAL posix.system" in _unsafe_names(model)
    _assert_good_tensors(model)


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "exec"),
                                         ("builtins", "getattr"), ("builtins", "__import__"),
                                         ("subprocess", "Popen"), ("runpy", "run_path"),
                                         ("webbrowser", "open"), ("nt", "system")])
def test_always_dangerous_globals(tmp_path: Path, module: str, name: str) -> None:
    sentinel = tmp_path / "SENTINEL"
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD + [("x", evil_call(sentinel, module, name))]), STORAGES)
    model = load(path)
    assert f"pickle GLOBAL {module}.{name}" in _unsafe_names(model)
    _assert_good_tensors(model)


def test_stack_global_protocol4_is_resolved_by_our_tables(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = s("builtins") + s("eval") + b"\x93" + b"(" + s(f"__import__('os').system('touch {sentinel}')") + b"tR"
    pkl = state_dict(GOOD + [("e", evil)]).replace(b"\x80\x02", b"\x80\x04", 1)
    model = load(torch_zip(tmp_path / "x.pt", pkl, STORAGES))
    assert not sentinel.exists()
    assert "pickle GLOBAL builtins.eval" in _unsafe_names(model)


def test_user_class_called_or_instantiated_is_unsafe(tmp_path: Path) -> None:
    # fail closed (issue 11): a class outside torch's grammar is a finding even when only
    # instantiated through NEWOBJ + BUILD, since torch.load imports its module and runs __setstate__
    called = g("mypkg.models", "build") + b"(" + s("resnet") + b"tR"
    newobj = g("mypkg.models", "Config") + b")\x81" + b"}" + s("depth") + i(3) + b"sb"
    pkl = state_dict(GOOD + [("a", called), ("b", newobj)])
    model = load(torch_zip(tmp_path / "x.pt", pkl, STORAGES))
    assert _unsafe_names(model) == ["pickle GLOBAL mypkg.models.build", "pickle GLOBAL mypkg.models.Config"]
    _assert_good_tensors(model)


def test_reduce_on_a_placeholder_calls_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    # os.system(...)(...) : the result of an unresolved call is itself called
    chained = evil_call(sentinel) + b"(" + s("again") + b"tR"
    model = load(torch_zip(tmp_path / "x.pt", state_dict(GOOD + [("c", chained)]), STORAGES))
    assert not sentinel.exists()
    assert "pickle GLOBAL os.system" in _unsafe_names(model)


def test_torchscript_names_are_not_flagged_but_os_in_code_is(tmp_path: Path) -> None:
    obj = (b"\x80\x02" + g("__torch__", "Net") + b")\x81}(" + s("training") + b"\x88"
           + s("fc") + g("__torch__.torch.nn.modules.linear", "Linear") + b")\x81}("
           + s("weight") + tensor("0", 12, (3, 4), (4, 1)) + s("bias") + tensor("1", 3, (3,), (1,))
           + b"ub" + b"ub.")
    code = ("class Net(Module):\n  fc : __torch__.torch.nn.modules.linear.Linear\n"
            "  def forward(self: __torch__.Net, x: Tensor) -> Tensor:\n"
            "    fc = self.fc\n    os.system('touch x')\n    return torch.relu((fc).forward(x, ))\n")
    path = tmp_path / "ts.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", obj)
        zf.writestr("archive/constants.pkl", b"\x80\x02).")
        zf.writestr("archive/code/__torch__.py", code, compress_type=zipfile.ZIP_DEFLATED)
        for k, v in STORAGES.items():
            zf.writestr(f"archive/data/{k}", v)
    assert detect_format(path) == "torchscript"
    model = load(path)
    names = _unsafe_names(model)
    assert not any("__torch__" in n for n in names)
    assert any("os" in n and "TorchScript code" in n for n in names), names
    assert [(t.name) for t in model.tensors()] == ["fc.weight", "fc.bias"]
    assert model.layer("fc").activation.kind.value == "relu"


# --------------------------------------------------------------------------------------------
# broken and hostile archives: LoadError, one line
# --------------------------------------------------------------------------------------------
def test_truncated_archive(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError) as info:
        detect_format(path)
        load(path)
    assert "\n" not in str(info.value)


def test_truncated_member_data(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    # chop the file right after the first storage's local header: central directory is gone
    data = path.read_bytes()
    cut = data.index(b"archive/data/0") + 20
    path.write_bytes(data[:cut])
    with pytest.raises(LoadError):
        load(path)


def test_compressed_storage_is_refused(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES, compress_data=True)
    _one_line_error(path, "compressed")


def test_storage_declaring_more_than_stored(tmp_path: Path) -> None:
    items = [("fc.weight", tensor("0", 10**6, (1000, 1000), (1000, 1)))]
    _one_line_error(torch_zip(tmp_path / "x.pt", state_dict(items), STORAGES), "declares")


def test_absurd_shape(tmp_path: Path) -> None:
    items = [("fc.weight", tensor("0", 12, (10**15,), (0,)))]
    _one_line_error(torch_zip(tmp_path / "x.pt", state_dict(items), STORAGES), "absurd")


def test_negative_stride(tmp_path: Path) -> None:
    items = [("fc.weight", tensor("0", 12, (3, 4), (-4, 1), offset=8))]
    _one_line_error(torch_zip(tmp_path / "x.pt", state_dict(items), STORAGES), "negative")


def test_view_beyond_storage(tmp_path: Path) -> None:
    items = [("fc.weight", tensor("0", 12, (3, 4), (4, 1), offset=1))]
    _one_line_error(torch_zip(tmp_path / "x.pt", state_dict(items), STORAGES), "beyond")


def test_missing_storage_member(tmp_path: Path) -> None:
    _one_line_error(torch_zip(tmp_path / "x.pt", state_dict(GOOD), {"0": W.tobytes()}), "missing")


def test_deeply_nested_lists(tmp_path: Path) -> None:
    depth = 200_000
    pkl = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    path = tmp_path / "deep.pt"
    path.write_bytes(pkl)
    _one_line_error(path, "deeper")


def test_deeply_nested_marks(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", b"\x80\x02" + b"(" * 300_000 + b".", {})
    _one_line_error(path, "deep")


def test_length_bomb_in_pickle(tmp_path: Path) -> None:
    pkl = b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"abc"
    _one_line_error(torch_zip(tmp_path / "x.pt", pkl, {}), "truncated")


def test_mismatched_local_and_central_headers(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    data = bytearray(path.read_bytes())
    first = data.index(b"archive/data.pkl")  # the local header's copy of the name comes first
    data[first:first + 16] = b"archive/data.pkX"
    path.write_bytes(bytes(data))
    _one_line_error(path, "mismatched")


def test_encrypted_member(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1  # general-purpose flag bit 0 in the central directory
    path.write_bytes(bytes(data))
    _one_line_error(path, "encrypted")


def test_two_data_pkl_members_are_ambiguous(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("other/data.pkl", state_dict([]))
    _one_line_error(path, "ambiguous")


def test_garbage_opcode(tmp_path: Path) -> None:
    _one_line_error(torch_zip(tmp_path / "x.pt", b"\x80\x02\xff.", {}), "opcode")


def test_object_dtype_numpy_array_is_refused(tmp_path: Path) -> None:
    # a whole object array (dtype O): its BUILD is refused (a bare dtype('O8') is inert data)
    pkl = pickle.dumps(np.array(["x", 1], dtype=object), protocol=2)
    _one_line_error(torch_zip(tmp_path / "x.pt", pkl, {}), "not supported")


def test_small_tensor_limit_is_honoured(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", state_dict(GOOD), STORAGES)
    with pytest.raises(LoadError):
        load(path, LoadOptions(max_tensor_bytes=16))
