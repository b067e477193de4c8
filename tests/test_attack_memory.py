"""Issue 11, resources: no small file costs more than seconds or a few hundred MB.

* Small files of every format that declare gigabytes (tests/attack/bombs.py) are audited in a
  child process under an address-space limit; each must end in a named outcome within seconds
  and grow the child's peak memory by less than 300 MB.
* libhdf5 runs in a bounded child before the Keras loader touches an HDF5 file: a hang, a crash
  or a blow-up there is a one-line error instead of a stuck or dead run.
* Scanning nested archives has a per-file inflation budget: a zip of zips of deflate bombs is
  bounded, and a pickle too large to scan is flagged, never silently passed.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from initaudit.engine import AuditConfig, audit_path
from initaudit.loaders import _h5guard, _scan

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.frameworks
def test_small_files_declaring_gigabytes_stay_small(tmp_path: Path) -> None:
    for writer in ("torch", "joblib"):  # the .pt and .joblib bombs' writers (bombs.py)
        pytest.importorskip(writer)
    def limit() -> None:  # a safety net for the box: the assertion below is the real bound
        resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))

    res = subprocess.run([sys.executable, str(REPO / "tests" / "attack" / "bombs.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, preexec_fn=limit, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout)
    formats = {Path(r["file"]).suffix for r in rows}
    assert {".safetensors", ".npz", ".pkl", ".gguf", ".msgpack", ".pt", ".onnx", ".h5",
            ".keras", ".joblib"} <= formats, formats
    for r in rows:
        assert r["seconds"] < 10, r
        assert r["grew_mb"] < 300, r
        err = r["error"] or ""
        assert "\n" not in err and not err.startswith(("could not be read (", "internal error")), r
        # declared sizes are refused or skipped with a reason: never read as if they were real
        assert r["status"] in ("error", "partial"), r


def test_h5_check_times_out_on_a_blocking_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("h5py")
    fifo = tmp_path / "stuck.h5"
    os.mkfifo(fifo)  # opening it blocks in C, as a libhdf5 loop would: only a timeout ends it
    monkeypatch.setattr(_h5guard, "_BASE_SECONDS", 2.0)
    t0 = time.time()
    with pytest.raises(_h5guard.H5Refused, match="did not finish .* within 2 s"):
        _h5guard.check(fifo, (0, 4096))
    assert time.time() - t0 < 10


def test_h5_check_bounds_the_child_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h5py = pytest.importorskip("h5py")
    import numpy as np

    p = tmp_path / "w.h5"
    with h5py.File(p, "w") as f:  # 256 MB of chunked data read slab by slab needs ~64 MB
        f.create_dataset("w", data=np.ones((4096, 16384), np.float32), chunks=(4096, 64))
    _h5guard.check(p)  # fine under the normal limit
    monkeypatch.setattr(_h5guard, "MEMORY_LIMIT", 64 * 2**20)  # below the interpreter itself
    monkeypatch.setattr(_h5guard, "_passed", {})  # the pass above is remembered otherwise
    with pytest.raises(_h5guard.H5Refused, match="needed more than 64 MB|safety check failed"):
        _h5guard.check(p)


def test_h5_check_keeps_normal_keras_files_fast(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    import numpy as np

    p = tmp_path / "k.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g.create_group("dense").create_dataset("kernel:0", data=np.ones((512, 256), np.float32))
    t0 = time.time()
    fr = audit_path(p, AuditConfig())
    assert fr.error is None
    assert time.time() - t0 < 10  # one child start (~0.3 s on an idle box)


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _torch_zip(path: Path, extra: list[tuple[str, bytes]]) -> Path:
    # a minimal torch zip: an empty dict for data.pkl, plus the extra members
    path.write_bytes(_zip([("m/data.pkl", b"\x80\x02}q\x00."), ("m/version", b"3\n"), *extra],
                          zipfile.ZIP_STORED))
    return path


def test_nested_zip_bombs_are_bounded_and_flagged(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scan, "SCAN_BUDGET", 48 * 2**20)
    # pickle-headed 16 MB members, deflated to ~16 KB each, three levels deep
    pk = b"\x80\x02" + bytes(16 * 2**20)
    level1 = _zip([(f"p{i}.bin", pk) for i in range(4)])
    level2 = _zip([("a.zip", level1), ("b.zip", level1)])
    p = _torch_zip(tmp_path / "nested.pt", [("m/extra/bomb.zip", level2)])
    assert p.stat().st_size < 1_000_000
    t0 = time.time()
    fr = audit_path(p, AuditConfig())
    assert time.time() - t0 < 30
    flags = [f.message for f in fr.findings if f.code == "IA501"]
    assert any("scan budget" in m for m in flags), (fr.error, flags)


def test_oversized_pickle_member_is_flagged_not_noted(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scan, "SCAN_CAP", 4 * 2**20)
    p = _torch_zip(tmp_path / "big.pt", [("m/extra/big.pkl", b"\x80\x02" + bytes(8 * 2**20))])
    fr = audit_path(p, AuditConfig())
    flags = [f.message for f in fr.findings if f.code == "IA501"]
    assert any("scan limit" in m for m in flags), (fr.error, flags, fr.notes)


def test_oversized_data_member_is_only_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scan, "SCAN_CAP", 4 * 2**20)
    p = _torch_zip(tmp_path / "big.pt", [("m/extra/blob.txt", b"hello " * 2**20)])
    fr = audit_path(p, AuditConfig())
    assert not [f for f in fr.findings if f.code == "IA501"]


def test_npz_of_many_small_bombs_has_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from initaudit.loaders import load, npz_loader

    monkeypatch.setattr(npz_loader, "_INFLATE_BUDGET", 25 * 2**20)
    buf = io.BytesIO()
    np.save(buf, np.zeros((2048, 1024), np.float32))  # 8 MB of zeros, each under the bomb size
    p = tmp_path / "many.npz"
    p.write_bytes(_zip([(f"w{i}.npy", buf.getvalue()) for i in range(5)]))
    model = load(p)
    over = [k for k, why in model.skipped if "in total" in why]
    assert over == ["w3", "w4"], model.skipped
