"""Write the pickles of fickling's bypass tests (trailofbits/fickling ``test/test_bypasses.py``,
LGPL-3.0) to a folder, one file per pickle the tests build, with a label from the test's name.

Run with a Python that has fickling installed (the peers' venv): the test module is read from
the local git mirror, its ``check_safety`` is replaced by a recorder that keeps
``pickled.dumps()`` - nothing is unpickled, nothing is analysed. Used by benchmarks/scanners.py::

    /work/venv-sec/bin/python benchmarks/fickling_bypasses.py MIRROR_GIT_DIR OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
import unittest
from pathlib import Path
from typing import Any

# tests that build pickles fickling must NOT flag (its false-positive checks)
BENIGN = ("not_flagged", "well_formed")
UNLABELLED = ("allowlist",)


def main(git: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    src = subprocess.run(["git", "-C", str(git), "show", "HEAD:test/test_bypasses.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("fickling_test_bypasses")
    exec(compile(src, "test_bypasses.py", "exec"), mod.__dict__)  # the peer's test code, not a pickle
    recorded: list[tuple[str, bytes]] = []
    current = [""]

    class _Result:
        severity = max(mod.Severity)  # every assertGreater passes; the label comes from the name
        results: list[Any] = []

        def __getattr__(self, name: str) -> Any:
            return []

    def record(pickled: Any, *args: Any, **kwargs: Any) -> _Result:
        try:
            recorded.append((current[0], pickled.dumps()))
        except Exception:  # noqa: BLE001 - a deliberately malformed opcode list
            pass
        return _Result()

    mod.check_safety = record
    case = mod.TestBypasses
    names = [n for n in dir(case) if n.startswith("test_")]
    for name in names:
        current[0] = name
        test = case(name)
        try:
            getattr(test, name)()
        except Exception:  # noqa: BLE001 - assertions on the fake result may fail: irrelevant
            pass
    rows = []
    seen: set[bytes] = set()
    for k, (name, data) in enumerate(recorded):
        if data in seen:
            continue
        seen.add(data)
        label = ("benign" if any(b in name for b in BENIGN) else
                 "unlabelled" if any(u in name for u in UNLABELLED) else "malicious")
        digest = hashlib.sha256(data).hexdigest()[:8]
        path = out / f"{name}_{k:03d}_{digest}.pkl"
        path.write_bytes(data)
        rows.append({"file": path.name, "test": name, "label": label})
    (out / "labels.json").write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} pickles from {len(names)} tests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    unittest.TestCase.maxDiff = None
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
