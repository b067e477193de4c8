"""Small files that declare huge work, one or more per format initaudit reads (issue 11: "no
small file costs more than seconds or hundreds of MB").

Each file is a few KB and declares gigabytes: a tensor shape far beyond its bytes, a length
prefix beyond the file, a fill value, a deflate bomb, a zip nested in a zip. Written at run time
(with the framework where one writes the format, by hand where the layout is simple);
``python tests/attack/bombs.py DIR`` writes them and prints a JSON report of each file's
outcome, time and peak-memory growth (used by tests/test_attack_memory.py in a child process).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

BIG = 2**30  # elements declared where a few thousand are stored (4 GiB of float32)


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (10 + len(d) + 1) % 64
    hdr = (d + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr


def _mp_str(s: str) -> bytes:
    b = s.encode()
    return bytes([0xA0 | len(b)]) + b if len(b) < 32 else b"\xd9" + bytes([len(b)]) + b


def _mp_ext1(payload: bytes) -> bytes:
    return b"\xc7" + bytes([len(payload)]) + b"\x01" + payload


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _zeros_npy(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(n, np.uint8))
    return buf.getvalue()


def pure(d: Path) -> dict[str, Path]:
    """Bombs written without any framework."""
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)
        out[name] = d / name

    # safetensors: a 64k x 64k tensor over 16 bytes
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [65536, 65536], "data_offsets": [0, 16]}})
    put("shape.safetensors", struct.pack("<Q", len(hdr)) + hdr.encode() + bytes(16))
    # safetensors: a header length of 2**62
    put("hdrlen.safetensors", struct.pack("<Q", 2**62) + b"{}")
    # npy / npz: a header declaring 50k x 50k floats over 16 bytes
    npy = _npy_header((50000, 50000)) + bytes(16)
    put("shape.npy", npy)
    put("shape.npz", _zip([("w.npy", npy)]))
    # npz: 300 MB of zeros deflated to a few hundred KB, and the same nested one level down
    zeros = _zeros_npy(300 * 2**20)
    put("deflate.npz", _zip([("w.npy", zeros)], zipfile.ZIP_DEFLATED))
    put("nested.zip", _zip([("inner.npz", _zip([("w.npy", zeros)], zipfile.ZIP_DEFLATED))],
                           zipfile.ZIP_DEFLATED))
    # pickle: BINBYTES8 declaring 1 TiB; a list of 2**31 declared via a LONG4 count
    put("bytes8.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc")
    put("bigint.pkl", b"\x80\x02\x8b" + struct.pack("<i", 2**30) + b"\x01\x02.")
    # GGUF: one F32 tensor of 64k x 64k over 32 bytes
    name = b"blk.0.ffn_up.weight"
    gguf = (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", len(name)) + name
            + struct.pack("<I", 2) + struct.pack("<QQ", 65536, 65536) + struct.pack("<IQ", 0, 0))
    gguf += bytes(-len(gguf) % 32) + bytes(32)
    put("shape.gguf", gguf)
    # GGUF: a metadata string declaring 2**40 bytes
    put("string.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**40) + b"k")
    # Flax msgpack: {"params": {"kernel": ext1([[65536, 65536], "float32", 16 bytes])}}
    payload = b"\x93\x92\xcd\xff\xff\xcd\xff\xff" + _mp_str("float32") + b"\xc4\x10" + bytes(16)
    put("shape.msgpack", b"\x81" + _mp_str("params") + b"\x81" + _mp_str("kernel")
        + _mp_ext1(payload))
    # Flax msgpack: a bin32 declaring 4 GiB
    put("bin.msgpack", b"\x81" + _mp_str("params") + b"\x81" + _mp_str("kernel")
        + b"\xc6\xff\xff\xff\xff" + bytes(8))
    return out


def _replace_all(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new)


def with_frameworks(d: Path) -> dict[str, Path]:
    """Bombs made by editing files the frameworks wrote (each skipped when absent)."""
    out: dict[str, Path] = {}
    n = 4096
    small, huge = b"M" + struct.pack("<H", n), b"J" + struct.pack("<i", BIG)
    try:
        import torch

        t = {"fc.weight": torch.zeros(n)}
        # torch zip: storage numel and size 2**30 in data.pkl, 16 KB in data/0
        p = d / "tz.pt"
        torch.save(t, p)
        with zipfile.ZipFile(p) as zf:
            members = [(i.filename, zf.read(i)) for i in zf.infolist()]
        members = [(nm, _replace_all(b, small, huge) if nm.endswith("data.pkl") else b)
                   for nm, b in members]
        p.write_bytes(_zip(members))
        out["numel-zip.pt"] = p
        # legacy torch: the same in the pickles and the storage's own 8-byte count
        p = d / "tl.pt"
        torch.save(t, p, _use_new_zipfile_serialization=False)
        data = _replace_all(p.read_bytes(), small, huge)
        p.write_bytes(_replace_all(data, struct.pack("<q", n), struct.pack("<q", BIG)))
        out["numel-legacy.pt"] = p
        # a stride-0 view: 4 stored floats viewed as 10**10 (torch.save keeps the strides)
        p = d / "stride0.pt"
        torch.save({"w": torch.zeros(4).as_strided((100000, 100000), (0, 0))}, p)
        out["stride0.pt"] = p
    except ImportError:
        pass
    try:
        import onnx
        from onnx import TensorProto, helper

        init = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[65536, 65536],
                           raw_data=bytes(16))
        ext = TensorProto(name="E", data_type=TensorProto.FLOAT, dims=[65536, 65536])
        ext.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", "0"), ("length", str(2**34))):
            entry = ext.external_data.add()
            entry.key, entry.value = k, v
        (d / "w.bin").write_bytes(bytes(64))
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("MatMul", ["h", "E"], ["y"])],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 65536])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 65536])], [init, ext])
        p = d / "shape.onnx"
        onnx.save(helper.make_model(graph), p)
        out["shape.onnx"] = p
    except ImportError:
        pass
    try:
        import joblib

        p = d / "shape.joblib"
        joblib.dump({"fc.weight": np.zeros(n, np.float32)}, p)
        p.write_bytes(_replace_all(p.read_bytes(), small, huge))
        out["shape.joblib"] = p
    except ImportError:
        pass
    try:
        import h5py

        p = d / "fill.h5"
        with h5py.File(p, "w") as f:
            f.attrs["layer_names"] = [b"dense"]
            g = f.create_group("dense")
            g.attrs["weight_names"] = [b"dense/kernel:0"]
            g.create_group("dense").create_dataset("kernel:0", shape=(40000, 25000), dtype="f4",
                                                   chunks=(1000, 1000), compression="gzip")
        out["fill.h5"] = p
        cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
        p2 = d / "fill.keras"
        p2.write_bytes(_zip([("config.json", json.dumps(cfg).encode()),
                             ("metadata.json", b'{"keras_version": "3.5.0"}'),
                             ("model.weights.h5", p.read_bytes())], zipfile.ZIP_DEFLATED))
        out["fill.keras"] = p2
    except ImportError:
        pass
    return out


def report(d: Path) -> list[dict[str, object]]:
    """Audit every bomb in this process; each row: outcome, seconds, peak-RSS growth in MB."""
    import resource
    import time

    from initaudit.engine import AuditConfig, audit_path

    files = {**pure(d), **with_frameworks(d)}
    rows: list[dict[str, object]] = []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, path in files.items():
        t0 = time.time()
        fr = audit_path(path, AuditConfig())
        now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows.append({"file": name, "seconds": round(time.time() - t0, 2),
                     "grew_mb": round((now - peak) / 1024), "status": fr.status.value,
                     "error": fr.error, "skipped": [str(s)[:100] for s in fr.skipped][:3]})
        peak = max(peak, now)
    return rows


def warm_up(d: Path) -> None:
    """Load one small valid file of each format first, so the imports are not counted."""
    from initaudit.engine import AuditConfig, audit_path
    from tests.attack.fuzz import seeds

    for p in seeds(d / "seeds"):
        audit_path(p, AuditConfig())


MAKERS: list[Callable[[Path], dict[str, Path]]] = [pure, with_frameworks]

if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    warm_up(out_dir)
    print(json.dumps(report(out_dir), indent=1))
