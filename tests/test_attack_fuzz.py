"""Issue 11: a bounded mutation-fuzzing run over valid files of every format.

Byte flips, truncations, header edits, splices and zip tricks (duplicate/upper-case/deflated
members) of real seeds; each mutant must end in a named outcome - ok, partial, flagged or a
one-line error - within seconds: no exception escaping ``audit_path``, no engine last-resort
``could not be read (ExceptionType: ...)`` line, no slow file. Runs in a subprocess under a
memory limit and a timeout so a hang or a blow-up fails the test instead of the suite.
HDF5 mutants included: libhdf5 runs in a bounded child first (loaders/_h5guard.py). GGUF,
Flax, joblib and AOTInductor seeds too; TensorFlow (INITAUDIT_FUZZ_TF_DIR, the output of
tests/fixtures/make_tf_files.py) and orbax (INITAUDIT_FUZZ_ORBAX=1) in the long run.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _fuzz(n: int, seed: int, skip: str, timeout: float) -> dict:
    def limit() -> None:  # 3 GB of address space for the whole run
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    res = subprocess.run([sys.executable, str(REPO / "tests" / "attack" / "fuzz.py"), str(n), str(seed), skip],
                         capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


@pytest.mark.frameworks
def test_fuzzed_files_end_in_a_named_outcome() -> None:
    for writer in ("torch", "gguf", "flax", "joblib"):  # the seeds' writers (fuzz.py)
        pytest.importorskip(writer)
    out = _fuzz(40, 11, "", timeout=600)
    counts = out["counts"]
    assert sum(counts.values()) - counts.get("slow", 0) == 40
    assert {"k.h5", "g.gguf", "f.msgpack", "j.joblib", "aoti.pt2"} <= set(out["by_seed"]), out
    for bad in ("traceback", "last-resort"):
        assert counts.get(bad, 0) == 0, out["examples"]
    assert counts.get("slow", 0) <= 1, out["examples"]  # 10 s budget on a loaded 2-core box


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("INITAUDIT_SLOW"), reason="slow: set INITAUDIT_SLOW=1")
def test_fuzz_long_run() -> None:
    out = _fuzz(1000, 5, "", timeout=3600)
    assert out["counts"].get("traceback", 0) == 0 and out["counts"].get("last-resort", 0) == 0, out


def test_nul_bytes_in_paths_named_in_files_are_refused_in_words(tmp_path: Path) -> None:
    """Found by the fuzzer: a TF ``checkpoint`` state file or a safetensors index naming a path
    with a NUL byte reached the engine's last-resort line (ValueError: embedded null byte)."""
    import json
    import struct

    from initaudit.engine import AuditConfig, audit_path

    st = tmp_path / "st"
    st.mkdir()
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (st / "model-00001-of-00002.safetensors").write_bytes(struct.pack("<Q", len(hdr)) + hdr + bytes(16))
    (st / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"w": "model-00001-of-00002.safetensors", "v": "a\u0000b.safetensors"}}))
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint").write_bytes(b'model_checkpoint_path: "ckpt-1\x00"\n')
    for folder in (st, ck):
        fr = audit_path(folder, AuditConfig())
        assert not (fr.error or "").startswith("could not be read ("), fr.error


def test_whole_module_pickle_with_a_non_string_attribute_name(tmp_path: Path) -> None:
    """Found by the fuzzer (seed 9): a damaged whole-module pickle whose module state has a
    non-string key reached the last-resort line (AttributeError: no attribute 'startswith')."""
    import io
    import pickle as P
    import zipfile

    from initaudit.engine import AuditConfig, audit_path

    body = (P.PROTO + b"\x02" + P.GLOBAL + b"torch.nn.modules.linear\nLinear\n" + P.EMPTY_TUPLE
            + P.NEWOBJ + P.EMPTY_DICT + P.MARK + P.SHORT_BINUNICODE + b"\x08_modules" + P.EMPTY_DICT
            + P.SHORT_BINUNICODE + b"\x0b_parameters" + P.EMPTY_DICT
            + P.BININT1 + b"\x07" + P.BININT1 + b"\x03" + P.SETITEMS + P.BUILD + P.STOP)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/data.pkl", body)
        zf.writestr("m/version", "3\n")
    p = tmp_path / "m.pt"
    p.write_bytes(buf.getvalue())
    fr = audit_path(p, AuditConfig())
    assert not (fr.error or "").startswith("could not be read ("), fr.error
