"""joblib files: arrays read through the restricted unpickler; nothing is ever executed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import detect_format, load

pytestmark = pytest.mark.frameworks
joblib = pytest.importorskip("joblib")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"fc1.weight": rng.normal(0, 1 / np.sqrt(32), (64, 32)).astype(np.float32),
            "fc1.bias": np.zeros(64, np.float32),
            "fc2.weight": np.asfortranarray(rng.normal(0, 0.125, (10, 64))),
            "fc3.weight": np.full((10, 10), 0.3, np.float32)}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_arrays_bit_identical_and_torch_fans(tmp_path: Path, protocol: int) -> None:
    arrays = _arrays()
    path = tmp_path / "model.joblib"
    joblib.dump(arrays, path, protocol=protocol)
    assert detect_format(path) == "joblib"
    model = load(path)
    got = {t.name: t for t in model.tensors()}
    for name, arr in arrays.items():
        values = np.asarray(got[name].load())
        assert values.dtype == arr.dtype and np.array_equal(values, arr), name
    assert (got["fc1.weight"].fan_in, got["fc1.weight"].fan_out) == (32, 64)
    assert not model.unsafe
    assert {s.name for s in model.inventory or []} == set(arrays)
    report = audit(str(path)).files[0]
    assert {f.code for f in report.findings if f.tensor == "fc3.weight"} >= {"IA201"}


def test_dangerous_global_reported_never_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.joblib"
    marker = tmp_path / "ran"
    evil = _Evil()
    evil.__class__.__reduce__ = lambda self: (os.system, (f"touch {marker}",))  # type: ignore[method-assign]
    joblib.dump({"w": _arrays()["fc1.weight"], "payload": evil}, path)
    model = load(path)
    assert not marker.exists()
    assert any("system" in u.what for u in model.unsafe)
    assert [t.name for t in model.tensors()] == ["w"]
    report = audit(str(path)).files[0]
    assert not marker.exists() and report.error is None


def test_aotinductor_package_is_named_and_its_compiled_code_flagged(tmp_path: Path) -> None:
    """A .pt2 written by torch's own archive writer with an AOTInductor payload (the layout
    aoti_compile_and_package uses: data/aotinductor/<model>/...): aoti_load_package dlopens the
    shared library, so it is unsafe-content (exit 1), and its constants are listed as not
    analysed (never a silent ok)."""
    package = pytest.importorskip("torch.export.pt2_archive._package")
    path = tmp_path / "model.pt2"
    writer = package.PT2ArchiveWriter(str(path))
    writer.write_string("data/aotinductor/model/model.wrapper.cpp", "// compiled wrapper")
    writer.write_bytes("data/aotinductor/model/model.wrapper.so", b"\x7fELF")
    writer.write_bytes("data/aotinductor/model/model_consts.weights", b"\0" * 64)
    writer.close()
    result = audit(str(path))
    report = result.files[0]
    assert report.format == "pt2-aoti" and report.status.value == "partial"
    unsafe = [f for f in report.findings if f.code == "IA501"]
    assert unsafe and "AOTInductor shared library" in unsafe[0].message
    assert [s["category"] for s in report.skipped] == ["unsafe"]
    assert any("AOTInductor package" in n for n in report.notes)
    assert result.exit_code() == 1
