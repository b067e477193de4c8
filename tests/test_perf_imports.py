"""Start-up stays cheap: an audit of a float32 safetensors file imports none of the heavy optional
modules (scipy.stats alone costs more to import than reading a gigabyte; ml_dtypes, onnx, h5py,
rich, torch are needed only by the formats or outputs that use them). Not timed: it checks which
modules were imported, which is what the time depends on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from _subproc import run_python  # tests/ is on the path

HEAVY = ("scipy", "ml_dtypes", "onnx", "h5py", "rich", "torch", "keras", "jax")

PROBE = r"""
import os, runpy, sys
sys.argv = ["initaudit", *sys.argv[1:]]
try:
    runpy.run_module("initaudit", run_name="__main__")
except SystemExit:
    pass
heavy = sys.argv[-1].split(",")
print("LOADED=" + ",".join(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))), file=sys.stderr)
"""


def _write_safetensors(path: Path, dtype: str = "F32") -> None:
    rng = np.random.default_rng(0)
    arrays = {"fc1.weight": rng.normal(0, 0.05, (64, 32)), "fc2.weight": rng.normal(0, 0.05, (16, 64))}
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        raw = a.astype("<f4").tobytes() if dtype == "F32" else (
            (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes())
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def _loaded(args: list[str]) -> set[str]:
    out = run_python(PROBE, *args, ",".join(HEAVY))
    line = next(ln for ln in out.stderr.splitlines() if ln.startswith("LOADED="))
    return {m for m in line[len("LOADED="):].split(",") if m}


def test_float32_safetensors_audit_imports_nothing_heavy(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    assert _loaded([str(path), "--format", "json", "-o", os.devnull, "--exit-zero"]) == set()


def test_version_imports_nothing_heavy() -> None:
    assert _loaded(["--version"]) == set()


def test_bfloat16_file_loads_ml_dtypes_only(tmp_path: Path) -> None:
    """The format needs it: bf16 tensors are ml_dtypes arrays; still no scipy."""
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, "BF16")
    loaded = _loaded([str(path), "--format", "json", "-o", os.devnull, "--exit-zero"])
    assert "scipy" not in loaded and "torch" not in loaded


def test_signal_moments_of_every_activation_import_no_scipy() -> None:
    """SiLU, GELU and sigmoid used scipy.special (~0.24 CPU-s to import) in signal propagation."""
    code = (
        "import sys\n"
        "from initaudit.analysis.signal import activation_moments\n"
        "from initaudit.model import Activation, ActivationKind as K\n"
        "for kind in K:\n"
        "    activation_moments(Activation(kind), 0.7)\n"
        "print('LOADED=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & {'scipy'})))\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert "LOADED=\n" in out.stdout
