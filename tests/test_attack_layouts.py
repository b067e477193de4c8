"""Layouts that slipped past the scanner in review (each built here, none executed): a pickle
with bytes after its STOP, a pickle carrying TFLite's identifier, a torch pickle inside an npz or
Keras-shaped zip, an npz member not named .npy, a second pickle after a joblib file's first."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from initaudit.engine import audit_path
from initaudit.loaders import detect_format

PAYLOAD0 = b"cos\nsystem\n(S'echo never-run'\ntR."  # protocol 0: os.system('echo never-run')
PAYLOAD2 = b"\x80\x02cos\nsystem\nq\x00X\x09\x00\x00\x00never-runq\x01\x85q\x02Rq\x03."


def _unsafe(path: Path) -> list[str]:
    return [f.message for f in audit_path(path).findings if f.code == "IA501"]


def test_protocol0_pickle_with_a_trailing_newline_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(PAYLOAD0 + b"\n")  # pickle.load ignores what follows the STOP
    assert any("os.system" in m or "os system" in m for m in _unsafe(path))


def test_a_pickle_carrying_the_tflite_identifier_is_read_as_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x02U\x04TFL30" + PAYLOAD2[2:])  # a short string "TFL3", then the call
    assert detect_format(path) == "pytorch-legacy"
    assert _unsafe(path)


@pytest.mark.parametrize("extra", ["x.npy", "config.json"])
def test_a_torch_pickle_in_an_npz_or_keras_shaped_zip_is_scanned(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/DATA.PKL", PAYLOAD0)
        buf = io.BytesIO()
        np.save(buf, np.zeros((4, 4), np.float32))
        zf.writestr(extra, buf.getvalue() if extra.endswith(".npy") else "{}")
        if extra == "config.json":
            zf.writestr("model.weights.h5", b"")
    assert detect_format(path) == "pytorch-zip"
    assert _unsafe(path)


def test_an_npz_member_not_named_npy_is_scanned(tmp_path: Path) -> None:
    """np.load(f, allow_pickle=True)["evil"] parses any member that starts like a .npy."""
    object_npy = io.BytesIO()
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - len(header) % 64) + b"\n"
    object_npy.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + PAYLOAD2)
    path = tmp_path / "weights.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil", object_npy.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.zeros((4, 4), np.float32))
        zf.writestr("w.npy", buf.getvalue())
    assert _unsafe(path)


def test_a_second_pickle_after_a_joblib_file_is_scanned(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"fc.weight": np.zeros((4, 4), np.float32)}, path)
    with open(path, "ab") as fh:
        fh.write(PAYLOAD2)
    assert detect_format(path) == "joblib"
    assert _unsafe(path)
