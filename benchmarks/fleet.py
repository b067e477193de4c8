"""Fleet throughput: files per second auditing a folder of small checkpoints on a local Dask
cluster of 1 and 2 workers, next to local processes (``--jobs``) for comparison, and the
results-cache re-run.

    python benchmarks/fleet.py                 # 200 checkpoints, 1 and 2 workers
    python benchmarks/fleet.py --files 50 --json out.json

Checkpoints are written by safetensors at run time (3 kernels of 64-256 units each, ~300 KB):
the per-file overhead (scheduling, import warm-up, result transfer) is what dominates a fleet
of many small files, so that is what this measures. The cluster start-up is timed separately
and left out of the throughput. Numbers depend on the load of the machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from initaudit.engine import AuditConfig
from initaudit.runner import audit_all


def make_fleet(folder: Path, n: int) -> list[str]:
    from safetensors.numpy import save_file

    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        tensors = {}
        width = 64 + 64 * (i % 4)
        fan_in = 128
        for layer in range(3):
            tensors[f"l{layer}.weight"] = (rng.standard_normal((width, fan_in))
                                           * np.sqrt(2 / fan_in)).astype(np.float32)
            tensors[f"l{layer}.bias"] = np.zeros(width, np.float32)
            fan_in = width
        p = folder / f"ckpt_{i:04d}.safetensors"
        save_file(tensors, str(p))
        paths.append(str(p))
    return paths


def _no_notes(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "notes"}


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    import distributed

    tmp = Path(tempfile.mkdtemp(prefix="initaudit-fleet-"))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    rows: list[dict[str, object]] = []
    try:
        (tmp / "ckpts").mkdir()
        paths = make_fleet(tmp / "ckpts", args.files)
        config = AuditConfig(workers=1)
        reference = None
        for jobs in (1, 2):
            seconds, res = timed(lambda jobs=jobs: audit_all(paths, config, jobs=jobs))
            reference = reference or [r.to_dict() for r in res]  # type: ignore[union-attr]
            rows.append({"engine": "local processes", "workers": jobs, "files": len(paths),
                         "seconds": round(seconds, 2), "files_per_s": round(len(paths) / seconds, 1)})
        for workers in (1, 2):
            start, cluster = timed(lambda workers=workers: distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=40))
            try:
                # one warm-up file per worker: workers import numpy/scipy on their first task
                audit_all(paths[:workers], config, executor="dask",
                          address=cluster.scheduler_address)  # type: ignore[attr-defined]
                address = cluster.scheduler_address  # type: ignore[attr-defined]
                seconds, res = timed(lambda address=address: audit_all(
                    paths, config, executor="dask", address=address))
            finally:
                cluster.close()  # type: ignore[attr-defined]
            same = [r.to_dict() for r in res] == reference  # type: ignore[union-attr]
            rows.append({"engine": "dask", "workers": workers, "files": len(paths),
                         "seconds": round(seconds, 2), "files_per_s": round(len(paths) / seconds, 1),
                         "cluster_start_s": round(start, 2), "same_reports_as_jobs_1": same})
        cache = tmp / "cache"
        cold, _ = timed(lambda: audit_all(paths, AuditConfig(workers=1, cache_dir=str(cache)), jobs=1))
        warm, res = timed(lambda: audit_all(paths, AuditConfig(workers=1, cache_dir=str(cache)), jobs=1))
        rows.append({"engine": "cache (jobs 1)", "workers": 1, "files": len(paths),
                     "cold_s": round(cold, 2), "rerun_s": round(warm, 2),
                     "rerun_files_per_s": round(len(paths) / warm, 1),
                     # a cache hit adds one note saying so; everything else is the same report
                     "same_reports_as_jobs_1": [_no_notes(r.to_dict()) for r in res]  # type: ignore[union-attr]
                     == [_no_notes(r) for r in reference or []]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
