"""How many workers an audit uses: the CPUs it may really use (a container's cgroup CPU quota,
not the host's core count), forked workers not capped at 8 like threads, never more workers than
the tensors or the bytes keep busy. The cgroup files are written as the kernel shows them (v1
and v2 layouts, nested levels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from initaudit import engine


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    proc_file = tmp_path / "proc_cgroup"
    proc_file.write_text(proc)
    root = tmp_path / "sys"
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(proc_file), str(root)


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        # cgroup v2, a quota of 4 CPUs on the container's own level (namespace root)
        ("0::/\n", {"cpu.max": "400000 100000\n"}, 4),
        # v2, no quota anywhere
        ("0::/ci/job\n", {"cpu.max": "max 100000\n", "ci/job/cpu.max": "max 100000\n"}, None),
        # v2, 1.5 CPUs rounds up; a parent's tighter quota wins over the job's own
        ("0::/ci/job\n", {"ci/cpu.max": "150000 100000\n", "ci/job/cpu.max": "800000 100000\n"}, 2),
        # cgroup v1, the cpu controller mounted with cpuacct
        (
            "12:memory:/k8s/pod\n4:cpu,cpuacct:/k8s/pod\n",
            {
                "cpu,cpuacct/k8s/pod/cpu.cfs_quota_us": "200000\n",
                "cpu,cpuacct/k8s/pod/cpu.cfs_period_us": "100000\n",
            },
            2,
        ),
        # v1 without a quota (-1), as on this machine
        (
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        # unreadable or malformed files are no limit, not an error
        ("0::/\n", {"cpu.max": "garbage\n"}, None),
        ("0::/\n", {}, None),
    ],
)
def test_cgroup_cpu_limit(tmp_path: Path, proc: str, files: dict[str, str],
                          expected: int | None) -> None:
    proc_file, root = _tree(tmp_path, proc, files)
    assert engine.cgroup_cpu_limit(proc_file, root) == expected


def test_no_proc_file_means_no_limit(tmp_path: Path) -> None:
    assert engine.cgroup_cpu_limit(str(tmp_path / "absent"), str(tmp_path)) is None


def test_available_cpus_obeys_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(engine, "cgroup_cpu_limit", lambda: 4)
    assert engine.available_cpus() == 4
    assert engine.default_workers() == 4
    monkeypatch.setattr(engine, "cgroup_cpu_limit", lambda: None)
    assert engine.available_cpus() == 64
    assert engine.default_workers() == 8  # threads: the GIL, not the cores, bounds them


def test_forked_workers_scale_past_eight_but_not_past_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "available_cpus", lambda: 64)
    gib = 1 << 30
    assert engine.fork_workers(140 * gib, 700) == 64  # a 70B bf16 checkpoint on 64 cores
    assert engine.fork_workers(140 * gib, 20) == 20  # no more workers than tensors
    assert engine.fork_workers(100 << 20, 300) == 6  # 100 MiB: 16 MiB of work each at least
    monkeypatch.setattr(engine, "available_cpus", lambda: 2)
    assert engine.fork_workers(2 * gib, 218) == 2


def test_threads_stay_at_eight_whatever_share_they_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--jobs hands each file its share of the CPUs (32 of 64 for two files); where a file's
    tensors run on threads (the GIL bounds them), no more than 8 are started."""
    import concurrent.futures

    import numpy as np

    from initaudit.model import Role, WeightTensor
    from initaudit.settings import AuditConfig

    made: list[int] = []
    real = concurrent.futures.ThreadPoolExecutor

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, max_workers: int) -> None:
            made.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Recording)
    tensors = [
        WeightTensor(name=f"t{i}", layer=f"l{i}", op="Linear", role=Role.KERNEL, shape=(4, 4),
                     dtype="float32", load=lambda: np.zeros((4, 4), dtype=np.float32))
        for i in range(20)
    ]
    out = list(engine._run_tensors(tensors, lambda t: (t.name,), AuditConfig(workers=32)))
    assert [r for _, r in out] == [(t.name,) for t in tensors]  # every tensor, in order
    assert made == [engine.THREAD_MAX_WORKERS]
