"""Issue 11: a bounded mutation-fuzzing run over valid files of every format.

Byte flips, truncations, header edits, splices and zip tricks (duplicate/upper-case/deflated
members) of real seeds; each mutant must end in a named outcome - ok, partial, flagged or a
one-line error - within seconds: no exception escaping ``audit_path``, no engine last-resort
``could not be read (ExceptionType: ...)`` line, no slow file. Runs in a subprocess under a
memory limit and a timeout so a hang or a blow-up fails the test instead of the suite.
HDF5 seeds are fuzzed separately (libhdf5 can loop on corrupt files: a known limit).
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
    out = _fuzz(30, 11, ".h5", timeout=600)
    counts = out["counts"]
    assert sum(counts.values()) - counts.get("slow", 0) == 30
    for bad in ("traceback", "last-resort"):
        assert counts.get(bad, 0) == 0, out["examples"]
    assert counts.get("slow", 0) <= 1, out["examples"]  # 10 s budget on a loaded 2-core box


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("INITAUDIT_SLOW"), reason="slow: set INITAUDIT_SLOW=1")
def test_fuzz_long_run() -> None:
    out = _fuzz(1000, 5, ".h5", timeout=3600)
    assert out["counts"].get("traceback", 0) == 0 and out["counts"].get("last-resort", 0) == 0, out
