"""Fleets on a real local Dask cluster: the same reports as ``--jobs 1``, in the same order,
and a worker killed mid-run neither loses nor duplicates a file's report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 50


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """50 small checkpoints written by safetensors: He, Glorot and too-small inits mixed, so
    the reports differ from file to file (a shuffled order would show)."""
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("fleet")
    paths = []
    for i in range(N_FILES):
        rng = np.random.default_rng(i)
        fan_in, fan_out = 32 + 8 * (i % 5), 64
        scale = [np.sqrt(2 / fan_in), np.sqrt(2 / (fan_in + fan_out)), 1e-4][i % 3]
        save_file({"fc1.weight": (rng.standard_normal((fan_out, fan_in)) * scale).astype(np.float32),
                   "fc1.bias": np.zeros(fan_out, np.float32),
                   "fc2.weight": (rng.standard_normal((10, fan_out)) * np.sqrt(1 / fan_out)).astype(np.float32)},
                  str(folder / f"ckpt_{i:02d}.safetensors"))
        paths.append(str(folder / f"ckpt_{i:02d}.safetensors"))
    return paths


@pytest.fixture(scope="module")
def reference(fleet: list[str]) -> list[dict]:
    from initaudit.engine import AuditConfig
    from initaudit.runner import audit_all

    return [r.to_dict() for r in audit_all(fleet, AuditConfig(workers=1), jobs=1)]


@pytest.fixture(scope="module")
def cluster() -> object:
    os.environ.setdefault("PYTHONPATH", str(ROOT))  # spawned workers import this checkout
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as c:
        yield c


@pytest.mark.parametrize("window", [7, 2000])
def test_dask_fleet_same_reports_as_jobs_1(fleet: list[str], reference: list[dict],
                                           cluster: object, window: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from initaudit import distributed as fleet_mod
    from initaudit.engine import AuditConfig
    from initaudit.runner import audit_all

    monkeypatch.setattr(fleet_mod, "WINDOW", window)  # 7: submitted in windows as it goes

    got = audit_all(fleet, AuditConfig(workers=1), executor="dask",
                    address=cluster.scheduler_address)  # type: ignore[attr-defined]
    assert [r.to_dict() for r in got] == reference
    assert len({r["path"] for r in reference}) == N_FILES


def test_worker_killed_mid_run_loses_and_duplicates_nothing(fleet: list[str], reference: list[dict],
                                                            cluster: object,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from initaudit import distributed as fleet_mod
    from initaudit.distributed import DaskEngine
    from initaudit.engine import AuditConfig

    monkeypatch.setattr(fleet_mod, "WINDOW", 10)
    fleet_engine = DaskEngine(address=cluster.scheduler_address)  # type: ignore[attr-defined]
    client = fleet_engine.client
    pids = client.run(os.getpid)  # worker address -> pid
    seen: list[dict] = []
    killed = None
    try:
        for report in fleet_engine.audit(fleet, [AuditConfig(workers=1)] * len(fleet)):
            seen.append(report.to_dict())
            if killed is None and len(seen) >= 5:
                # a worker that is running a task right now; looked for after each report from the
                # fifth on (at one report only, the window could already have drained: a flake)
                deadline = time.monotonic() + 1
                while killed is None and time.monotonic() < deadline:
                    busy = [w for w, tasks in client.processing().items() if tasks and w in pids]
                    if busy:
                        killed = busy[0]
                        os.kill(pids[killed], signal.SIGKILL)
                    else:
                        time.sleep(0.01)
    finally:
        fleet_engine.close()
    assert killed is not None, "no worker was busy: the kill did not happen mid-run"
    assert [r["path"] for r in seen] == fleet  # each file once, in input order
    assert seen == reference


def _cli(folder: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "initaudit", folder, "--format", "json", *extra],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_cli_executor_dask_output_identical_to_jobs_1(fleet: list[str], cluster: object) -> None:
    folder = str(Path(fleet[0]).parent)
    one = _cli(folder, "--jobs", "1")
    dask = _cli(folder, "--executor", "dask", "--address",
                cluster.scheduler_address)  # type: ignore[attr-defined]
    assert one.returncode in (0, 1) and dask.returncode == one.returncode, dask.stderr
    assert json.loads(dask.stdout) == json.loads(one.stdout)
    assert len(json.loads(one.stdout)["files"]) == N_FILES


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("INITAUDIT_SLOW"), reason="set INITAUDIT_SLOW=1 (starts a cluster)")
def test_cli_executor_dask_starts_a_local_cluster(fleet: list[str]) -> None:
    folder = str(Path(fleet[0]).parent)
    one = _cli(folder, "--jobs", "1")
    dask = _cli(folder, "--executor", "dask", "--jobs", "2")
    assert one.returncode in (0, 1) and dask.returncode == one.returncode, dask.stderr
    assert json.loads(dask.stdout) == json.loads(one.stdout)
    assert len(json.loads(one.stdout)["files"]) == N_FILES


def test_unreachable_scheduler_is_one_line_exit_2(fleet: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INITAUDIT_DASK_TIMEOUT": "2"}
    out = subprocess.run([sys.executable, "-m", "initaudit", fleet[0], fleet[1], "--executor", "dask",
                          "--address", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Dask scheduler" in out.stderr, out.stderr


def test_cache_rerun_audits_only_what_changed(fleet: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from initaudit import engine
    from initaudit.engine import AuditConfig
    from initaudit.runner import audit_all

    calls: list[str] = []
    real = engine.audit_path

    def counting(path: str, config: AuditConfig):  # type: ignore[no-untyped-def]
        calls.append(path)
        return real(path, config)

    monkeypatch.setattr(engine, "audit_path", counting)
    config = AuditConfig(workers=1, cache_dir=str(tmp_path / "cache"))
    import shutil

    (tmp_path / "ckpts").mkdir()
    files = [shutil.copy(f, tmp_path / "ckpts") for f in fleet[:10]]
    first = [r.to_dict() for r in audit_all(files, config, jobs=1)]
    assert len(calls) == 10
    calls.clear()
    again = [r.to_dict() for r in audit_all(files, config, jobs=1)]
    assert calls == []  # answered from the cache: the same report, and it says so
    for a, b in zip(again, first):
        assert a["notes"] == [*b["notes"], ("answered from the results cache: content key "
                                            "unchanged since the audit that wrote it")]
        assert {k: v for k, v in a.items() if k != "notes"} == {k: v for k, v in b.items() if k != "notes"}
    # one file rewritten: only it is audited again
    from safetensors.numpy import load_file, save_file

    tensors = load_file(files[3])
    tensors["fc1.weight"] = tensors["fc1.weight"] * 100
    save_file(tensors, files[3])
    third = [r.to_dict() for r in audit_all(files, config, jobs=1)]
    assert calls == [files[3]]
    assert third[3] != first[3] and third[3]["tensors"] != first[3]["tensors"]
    assert [r["tensors"] for r in third[:3] + third[4:]] == [r["tensors"] for r in first[:3] + first[4:]]
