"""Run a Python snippet in a fresh interpreter that imports this tree's initaudit (the start-up
and import tests: what a new process loads is what they check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str, cwd: Path = ROOT,
               env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` with the tree on PYTHONPATH; ``env`` sets (or, with None,
    removes) variables on top of this process's environment."""
    full = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=120)
