"""Per-kernel analysis cost inside a real audit (issue 14): CPU time of each per-tensor step.

Runs ``engine.audit_path(PATH, AuditConfig(workers=1))`` in-process ROUNDS times (the first
round warms imports and the page cache) and reports, for the best round, the process CPU time
of the audit and the mean CPU time per call of the fused pass (run_pass) and of the analyses
that follow it: duplicate/dead units (check_units), identification (identify, of which
fit_families) and the trained/initialized state (classify_tensor, of which the block gather and
statistics, _block, and the spectral test, spectral_ratio).

    python benchmarks/per_kernel.py /work/perfdata/llama-fp32-435471360 [ROUNDS]

Compare two trees by running it with PYTHONPATH pointing at each, interleaved (the machine is
shared: CPU time is steadier than wall time, and alternating runs share the same load).
"""

from __future__ import annotations

import collections
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any

if importlib.util.find_spec("initaudit") is None:  # PYTHONPATH may name another tree to compare
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from initaudit import engine  # noqa: E402
from initaudit.analysis import identify, state, tensorpass, units  # noqa: E402
from initaudit.settings import AuditConfig  # noqa: E402

STEPS = (
    (tensorpass, "run_pass"),
    (units, "check_units"),
    (identify, "identify"),
    (identify, "fit_families"),
    (state, "classify_tensor"),
    (state, "_block"),
    (state, "spectral_ratio"),
)


def main() -> None:
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start
                calls[name] += 1

        return wrapper

    for module, name in STEPS:  # module attributes: the engine looks them up at call time
        setattr(module, name, timed(name, getattr(module, name)))
    best: tuple[float, str] | None = None
    for _ in range(rounds):
        spent.clear()
        calls.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        engine.audit_path(path, AuditConfig(workers=1))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        steps = " ".join(
            f"{name} {1000 * spent[name] / max(calls[name], 1):.3f}" for _, name in STEPS
        )
        line = f"audit {cpu:.3f} CPU-s ({wall:.3f} s wall) | ms per call: {steps}"
        if best is None or cpu < best[0]:
            best = (cpu, line)
    assert best is not None
    print(best[1])


if __name__ == "__main__":
    main()
