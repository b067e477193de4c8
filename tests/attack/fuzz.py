"""A mutation fuzzer over valid checkpoints of every format initaudit reads.

Seeds are written at run time (torch zip / legacy / TorchScript / .pt2 with torch when present,
otherwise assembled; npz; safetensors; Keras .h5 with h5py; ONNX with onnx). Each mutant (byte
flips, truncation, header edits, zip tricks) goes through ``audit_path`` and its outcome is
classed:

* ``ok`` / ``partial`` / ``flagged`` (IA501) / ``error`` (one named line) - all fine;
* ``last-resort`` - the engine's generic ``could not be read (ExceptionType: ...)`` line: a
  loader let an exception class escape instead of naming the problem;
* ``slow`` - took longer than ``slow_after`` seconds.

``python tests/attack/fuzz.py N [SEED]`` prints the counts as JSON (run it under a memory limit:
``prlimit --as=4000000000``). A sentinel file proves no payload ran.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def seeds(d: Path) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 4)).astype(np.float32)
    # npz
    p = d / "s.npz"
    np.savez(p, **{"fc.weight": w, "fc.bias": np.zeros(8, np.float32)})
    out.append(p)
    # safetensors
    hdr = json.dumps({"fc.weight": {"dtype": "F32", "shape": [8, 4], "data_offsets": [0, 128]},
                      "__metadata__": {"format": "pt"}}).encode()
    p = d / "s.safetensors"
    p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + w.tobytes())
    out.append(p)
    try:
        import torch

        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        for name, kw in (("zip.pt", {}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
            p = d / name
            torch.save(net.state_dict(), p, **kw)  # type: ignore[arg-type]
            out.append(p)
        p = d / "module.pt"
        torch.save(net, p)
        out.append(p)
        p = d / "ts.pt"
        torch.jit.save(torch.jit.script(net), p)
        out.append(p)
        p = d / "e.pt2"
        torch.export.save(torch.export.export(net, (torch.randn(1, 4),)), p)
        out.append(p)
    except ImportError:
        pass
    try:
        import h5py

        p = d / "k.h5"
        with h5py.File(p, "w") as f:
            f.attrs["layer_names"] = [b"dense"]
            g = f.create_group("dense")
            g.attrs["weight_names"] = [b"dense/kernel:0"]
            g.create_group("dense").create_dataset("kernel:0", data=w)
        out.append(p)
    except ImportError:
        pass
    try:  # GGUF: a plain, a block-quantized and a K-quant tensor
        import gguf

        p = d / "g.gguf"
        gw = gguf.GGUFWriter(str(p), "llama")
        gw.add_tensor("blk.0.ffn_up.weight", rng.normal(size=(8, 32)).astype(np.float32))
        gw.add_tensor("blk.0.ffn_down.weight", gguf.quants.quantize(
            rng.normal(size=(8, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
            raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        q4k = rng.integers(0, 256, size=(4, 144), dtype=np.uint8)
        q4k[:, :4] = np.full((4, 2), 1e-3, np.float16).view(np.uint8)
        gw.add_tensor("blk.0.attn_q.weight", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        gw.write_header_to_file()
        gw.write_kv_data_to_file()
        gw.write_tensors_to_file()
        gw.close()
        out.append(p)
    except ImportError:
        pass
    try:  # Flax msgpack (flax.serialization's layout: ext 1 = msgpack [shape, dtype, bytes])
        import msgpack

        def arr(a: np.ndarray) -> msgpack.ExtType:
            return msgpack.ExtType(1, msgpack.packb([list(a.shape), a.dtype.name, a.tobytes()]))

        p = d / "f.msgpack"
        p.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": arr(w.T.copy()),
                                                            "bias": arr(np.zeros(8, np.float32))}}}))
        out.append(p)
    except ImportError:
        pass
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
            [numpy_helper.from_array(w, "W")])
        p = d / "m.onnx"
        onnx.save(helper.make_model(graph), p)
        out.append(p)
    except ImportError:
        pass
    out += _newer_seeds(d)
    return out


def _newer_seeds(d: Path) -> list[Path]:
    """GGUF, Flax msgpack, joblib, an AOTInductor .pt2, orbax and TensorFlow (directories: a
    mutant edits one file inside a copy), each skipped where its writer is absent."""
    out: list[Path] = []
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.05, (16, 16)).astype(np.float32)
    try:
        import gguf

        p = d / "g.gguf"
        gw = gguf.GGUFWriter(str(p), "llama")
        gw.add_tensor("blk.0.ffn_up.weight", w)
        gw.add_tensor("blk.0.ffn_down.weight", gguf.quants.quantize(
            w.reshape(8, 32), gguf.GGMLQuantizationType.Q8_0),
            raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        gw.write_header_to_file()
        gw.write_kv_data_to_file()
        gw.write_tensors_to_file()
        gw.close()
        out.append(p)
    except ImportError:
        pass
    try:
        from flax import serialization

        p = d / "f.msgpack"
        p.write_bytes(serialization.to_bytes({"params": {"Dense_0": {"kernel": w, "bias": w[0]}}}))
        out.append(p)
    except ImportError:
        pass
    try:
        import joblib

        p = d / "j.joblib"
        joblib.dump({"fc.weight": w}, p)
        out.append(p)
    except ImportError:
        pass
    try:
        from torch.export.pt2_archive._package import PT2ArchiveWriter

        p = d / "aoti.pt2"
        writer = PT2ArchiveWriter(str(p))
        writer.write_string("data/aotinductor/model/model.wrapper.cpp", "// compiled wrapper")
        writer.write_bytes("data/aotinductor/model/model.wrapper.so", b"\x7fELF")
        writer.write_bytes("data/aotinductor/model/model_consts.weights", w.tobytes())
        writer.close()
        out.append(p)
    except ImportError:
        pass
    tf_dir = os.environ.get("INITAUDIT_FUZZ_TF_DIR")  # tests/fixtures/make_tf_files.py output
    if tf_dir and Path(tf_dir).is_dir():
        for name in ("ckpt", "savedmodel", "model.tflite", "model_int8.tflite"):
            if (Path(tf_dir) / name).exists():
                dst = d / name
                if (Path(tf_dir) / name).is_dir():
                    shutil.copytree(Path(tf_dir) / name, dst, dirs_exist_ok=True)
                else:
                    shutil.copy(Path(tf_dir) / name, dst)
                out.append(dst)
    if os.environ.get("INITAUDIT_FUZZ_ORBAX"):  # importing jax + orbax costs seconds
        try:
            import orbax.checkpoint as ocp

            p = d / "orbax"
            ckptr = ocp.StandardCheckpointer()
            ckptr.save(p.absolute(), {"params": {"Dense_0": {"kernel": w, "bias": w[0]}}})
            ckptr.wait_until_finished()
            out.append(p)
        except ImportError:
            pass
    return out


def _mutant_of(src: Path, dst: Path, rng: random.Random) -> str:
    """Write a mutant of ``src`` (a file, or a copy of a folder with one file mutated) at
    ``dst``; the mutation kind."""
    if src.is_file():
        kind, data = mutate(src.read_bytes(), rng, src.name)
        dst.write_bytes(data)
        return kind
    shutil.copytree(src, dst)
    files = sorted(f for f in dst.rglob("*") if f.is_file() and f.stat().st_size)
    victim = rng.choice(files)
    kind, data = mutate(victim.read_bytes(), rng, victim.name)
    victim.write_bytes(data)
    return kind


def mutate(data: bytes, rng: random.Random, name: str) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flip", "truncate", "header", "splice", "zip"])
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(1, len(b))]
    elif kind == "header":  # edit the first bytes: lengths, magic, counts
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(b), 64))
            b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif kind == "splice":  # duplicate or drop a chunk
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b = b[:i] + b[i:j] * rng.choice([0, 2]) + b[j:]
    elif kind == "zip" and data[:2] == b"PK":
        b = bytearray(_zip_trick(data, rng))
    else:
        kind = "flip"
        b[rng.randrange(len(b))] ^= 0xFF
    return kind, bytes(b)


def _zip_trick(data: bytes, rng: random.Random) -> bytes:
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        members = [(i, zin.read(i)) for i in zin.infolist()]
    except Exception:  # noqa: BLE001
        return data
    trick = rng.choice(["dup", "case", "deflate", "drop", "bigname"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for k, (info, blob) in enumerate(members):
            name = info.filename
            if trick == "case" and name.endswith(".pkl"):
                name = name.upper()
            if trick == "drop" and k == rng.randrange(len(members)):
                continue
            method = zipfile.ZIP_DEFLATED if trick == "deflate" else zipfile.ZIP_STORED
            zout.writestr(zipfile.ZipInfo(name), blob, compress_type=method)
            if trick == "dup" and name.endswith(".pkl"):
                zout.writestr(zipfile.ZipInfo(name), blob[: len(blob) // 2])
        if trick == "bigname":
            zout.writestr(zipfile.ZipInfo("a/" * 200 + "data.pkl"), b"\x80\x02}.")
    return out.getvalue()


def run(n: int, seed: int, work: Path, slow_after: float = 10.0,
        skip: tuple[str, ...] = ()) -> dict:
    from initaudit.engine import AuditConfig, audit_path

    rng = random.Random(seed)
    files = [f for f in seeds(work / "seeds") if f.suffix not in skip and f.name not in skip]
    counts: Counter[str] = Counter()
    by_seed: dict[str, Counter[str]] = {}
    examples: dict[str, list[str]] = {}
    worst = 0.0
    mut = work / "mutants"
    mut.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        src = files[k % len(files)]
        p = mut / f"{k:05d}_{src.name}"
        kind = _mutant_of(src, p, rng)
        t0 = time.time()
        try:
            fr = audit_path(p, AuditConfig())
        except BaseException as exc:  # noqa: BLE001 - what we count
            counts["traceback"] += 1
            examples.setdefault("traceback", []).append(f"{p.name}/{kind}: {type(exc).__name__}: {exc}")
            continue
        dt = time.time() - t0
        worst = max(worst, dt)
        if dt > slow_after:
            counts["slow"] += 1
            examples.setdefault("slow", []).append(f"{p.name}/{kind}: {dt:.1f}s")
        err = fr.error or ""
        if err.startswith(("could not be read (", "internal error")):
            outcome = "last-resort"
            examples.setdefault(outcome, []).append(f"{p.name}/{kind}: {err[:160]}")
        elif any(f.code == "IA501" for f in fr.findings):
            outcome = "flagged"
        else:
            outcome = fr.status.value if not err else "error"
        counts[outcome] += 1
        by_seed.setdefault(src.name, Counter())[outcome] += 1
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    return {"mutants": n, "seeds": [f.name for f in files], "counts": dict(counts),
            "by_seed": {k: dict(v) for k, v in by_seed.items()},
            "worst_seconds": round(worst, 2), "examples": {k: v[:5] for k, v in examples.items()}}


if __name__ == "__main__":
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    skip = tuple(x for x in sys.argv[3].split(",") if x) if len(sys.argv) > 3 else ()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(n, seed, Path(tmp), skip=skip), indent=1))
