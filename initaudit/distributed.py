"""Fleets of checkpoints on a Dask cluster (the ``[distributed]`` extra).

One task per file, :func:`initaudit.runner._audit` on a worker, the FileReport sent back and
yielded **in input order**, so reporters, exit codes and the output are those of ``--jobs 1``.

Why Dask (``distributed``) and not Ray: it is pure Python wheels (~15 MB with its
dependencies, no native core to match to the platform or the Python version), a local cluster
starts in ~2 s inside a test, the same ``Client(address)`` reaches clusters started by SSH,
Kubernetes, YARN/Slurm (dask-jobqueue) or a cloud service, and the scheduler already
re-runs the tasks of a worker that dies (``distributed.scheduler.allowed-failures``), which is
what "a worker killed mid-run loses no file" needs. Ray would do the job too, but at ~10x the
install size for a workload that is embarrassingly parallel and needs none of its actors.

The interface is :class:`FleetEngine` (``submit`` files, iterate results in order) so a second
engine is one class; only Dask is implemented and supported.

Exactly one report per file: a future is keyed by its index; a task that ran twice (its first
worker died after finishing but before the result reached the scheduler) still resolves one
future once. Tasks are pure functions of (path, config), so a re-run gives the same report.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .engine import AuditConfig
    from .report import FileReport

EXECUTORS = ("dask",)
WINDOW = 2000  # tasks in flight per run (see DaskEngine.audit)


class DistributedError(Exception):
    """The engine is missing or the cluster cannot be reached: one line, exit 2."""


class FleetEngine(Protocol):
    def audit(self, paths: Sequence[str], configs: Sequence[AuditConfig]) -> Iterator[FileReport]:
        """The reports of ``paths``, in input order, as they become available."""

    def close(self) -> None: ...


def _task(path: str, config: AuditConfig) -> FileReport:
    from .runner import _audit

    return _audit(path, config)


class DaskEngine:
    """A ``distributed.Client`` on ``address``, or on a LocalCluster of ``workers`` processes."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import distributed
        except ImportError:
            raise DistributedError(
                "--executor dask needs the [distributed] extra "
                "(pip install 'initaudit[distributed]')"
            ) from None
        self._cluster: Any = None
        try:
            if address is None:
                # processes, one thread each: the per-tensor threads of the engine use the cores
                self._cluster = distributed.LocalCluster(
                    n_workers=workers or (os.cpu_count() or 1),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,
                )
                self.client = distributed.Client(self._cluster)
            else:
                # seconds to wait for the scheduler (INITAUDIT_DASK_TIMEOUT, default 20)
                timeout = os.environ.get("INITAUDIT_DASK_TIMEOUT", "20")
                self.client = distributed.Client(address, timeout=f"{float(timeout):g}s")
        except (OSError, ValueError) as exc:
            self.close()
            raise DistributedError(
                f"cannot reach the Dask scheduler at {address} ({str(exc).splitlines()[0][:120]})"
            ) from None

    def audit(self, paths: Sequence[str], configs: Sequence[AuditConfig]) -> Iterator[FileReport]:
        from distributed import as_completed

        run = uuid.uuid4().hex[:12]  # keys unique on a cluster other runs share
        todo = iter(enumerate(zip(paths, configs)))
        index: dict[Any, int] = {}
        live: dict[int, Any] = {}
        queue = as_completed()

        def submit_next() -> bool:
            item = next(todo, None)
            if item is None:
                return False
            i, (p, c) = item
            f = self.client.submit(_task, p, c, key=f"initaudit-{run}-{i}", pure=False, retries=1)
            index[f.key], live[i] = i, f
            queue.add(f)
            return True

        # at most WINDOW tasks submitted ahead: a million files never become a million futures
        # on the client and the scheduler at once; a slow file at the head of the order holds
        # back at most WINDOW finished reports
        for _ in range(WINDOW):
            if not submit_next():
                break
        done: dict[int, FileReport] = {}
        following = 0
        try:
            for future in queue:
                i = index.pop(future.key)
                done[i] = _result(future, paths[i])
                live.pop(i).release()
                submit_next()
                while following in done:  # stream back in input order
                    yield done.pop(following)
                    following += 1
        finally:
            for f in live.values():
                f.cancel()

    def close(self) -> None:
        for obj in (getattr(self, "client", None), self._cluster):
            if obj is not None:
                with contextlib.suppress(Exception):  # shutting down: nothing left to report
                    obj.close()


def _result(future: Any, path: str) -> FileReport:
    from .report import FileReport, Status

    try:
        report: FileReport = future.result()
        return report
    except Exception as exc:  # noqa: BLE001 -- a task that failed on every try: one line for it
        return FileReport(
            path=path,
            format=None,
            status=Status.ERROR,
            error=f"distributed task failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
        )


def engine(executor: str, address: str | None = None, workers: int | None = None) -> FleetEngine:
    if executor == "dask":
        return DaskEngine(address, workers)
    raise DistributedError(
        f"--executor must be one of {', '.join(EXECUTORS)} (or omitted for "
        f"local processes), not {executor!r}"
    )


def audit_iter(
    paths: Sequence[str],
    configs: Sequence[AuditConfig],
    executor: str,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[FileReport]:
    fleet = engine(executor, address, workers)
    try:
        yield from fleet.audit(paths, configs)
    finally:
        fleet.close()


__all__ = ["EXECUTORS", "DaskEngine", "DistributedError", "FleetEngine", "audit_iter", "engine"]
