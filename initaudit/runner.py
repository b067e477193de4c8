"""Audit many files, in this process or in a pool of processes, in a deterministic order.

The results come back in input order whatever ``jobs`` is (``Executor.map`` keeps the order),
so ``--jobs 4`` prints byte for byte what ``--jobs 1`` prints. A progress bar goes to stderr
only when stderr is a terminal and there are several files: never into a report on stdout.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # pragma: no cover
    from .discover import DiscoveryStats, Input
    from .report import FileReport
    from .settings import AuditConfig


def _audit(path: str, config: AuditConfig) -> FileReport:
    # looked up at call time: tests (and embedders) may replace engine.audit_path
    from dataclasses import replace

    from . import engine

    # per-tensor ignores are applied after the engine, so that what they hide is kept and counted
    bare = replace(config, tensor_ignores=())

    def run(p: str, c: AuditConfig) -> FileReport:
        return engine.audit_path(p, c)

    if config.cache_dir:
        from .cache import cached_audit

        fr = cached_audit(path, bare, run)
    else:
        fr = run(path, bare)
    if not config.tensor_ignores:  # the usual case: initaudit.baseline is not even imported
        return fr
    from .baseline import apply_ignores

    return apply_ignores(fr, config.tensor_ignores)


def _worker(args: tuple[str, AuditConfig]) -> FileReport:
    return _audit(*args)


def effective_jobs(jobs: int, n_files: int) -> int:
    """``0`` means one process per available CPU; never more processes than files."""
    if jobs <= 0:
        from .engine import available_cpus

        jobs = available_cpus()
    return max(1, min(jobs, n_files))


def audit_all(
    paths: Sequence[str],
    config: AuditConfig | Sequence[AuditConfig],
    *,
    jobs: int = 1,
    progress: bool = False,
    on_result: Callable[[FileReport], None] | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> list[FileReport]:
    """Audit ``paths`` with ``jobs`` processes; ``on_result`` sees each result in input order.
    ``config`` is one config for every path, or one per path (each file's nearest config).
    ``executor="dask"``: one task per file on a Dask cluster at ``address`` (None: a local
    cluster of ``jobs`` workers), see :mod:`initaudit.distributed`; same results, same order."""
    configs: list[AuditConfig] = (
        list(config)
        if isinstance(config, (list, tuple))
        else [cast("AuditConfig", config)] * len(paths)
    )
    if len(configs) != len(paths):
        raise ValueError("one config per path")
    workers = effective_jobs(jobs, len(paths))
    results: list[FileReport] = []
    show_bar = progress and len(paths) > 1 and _stderr_is_terminal()
    bar = _Bar(len(paths)) if show_bar else None
    try:
        if executor is not None:
            from .distributed import audit_iter

            results_iter = audit_iter(
                paths, configs, executor, address, workers if jobs > 0 else None
            )
        else:
            results_iter = _iterate(paths, configs, workers, bar)
        for result in results_iter:
            results.append(result)
            if on_result is not None:
                on_result(result)
            if bar is not None:
                bar.advance(result.path)
    finally:
        if bar is not None:
            bar.stop()
    return results


def collect_inputs(
    paths: Sequence[str],
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    respect_ignore: bool = True,
    stats: DiscoveryStats | None = None,
) -> list[Input]:
    """The inputs the arguments name, in order: a file, a folder or a glob walked with the
    include/exclude of the config nearest to it (:mod:`initaudit.discover`), a remote argument
    listed by its object store; the same file named twice is audited once. An argument that
    names nothing is an Input with the problem (reported as unreadable, exit 2)."""
    from .config import settings_for
    from .discover import discover_inputs

    inputs: list[Input] = []
    for arg in paths:
        if _is_url(arg):  # s3://, hf://, https://: listed by the object store
            inputs += _remote_inputs(arg)
            continue
        settings = settings_for(arg, config_file=config_file, overrides=overrides or {})
        inputs += discover_inputs(
            [arg],
            include=settings.include,
            exclude=settings.exclude,
            respect_ignore=respect_ignore,
            stats=stats,
        )
    return _dedupe(inputs)


def configs_for(
    inputs: Sequence[Input],
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    **run_wide: Any,
) -> dict[str, AuditConfig]:
    """Each readable input's AuditConfig: the config nearest to it (or ``config_file``) with
    ``overrides`` applied, then the run-wide fields (``max_seconds``, ``probe``...) set."""
    from dataclasses import replace

    from .config import settings_for

    return {
        i.path: replace(
            settings_for(i.path, config_file=config_file, overrides=overrides or {}).audit_config(),
            **run_wide,
        )
        for i in inputs
        if i.problem is None
    }


def audit_inputs(
    inputs: Sequence[Input],
    configs: dict[str, AuditConfig],
    *,
    jobs: int = 1,
    progress: bool = False,
    executor: str | None = None,
    address: str | None = None,
) -> list[FileReport]:
    """:func:`audit_all` over the readable inputs, each with its own config; an input with a
    problem (an empty folder, a glob without match) becomes a FileReport with status error.
    Results in input order."""
    from .report import FileReport, Status

    paths = [i.path for i in inputs if i.problem is None]
    audited = iter(
        audit_all(
            paths,
            [configs[p] for p in paths],
            jobs=jobs,
            progress=progress,
            executor=executor,
            address=address,
        )
    )
    return [
        next(audited)
        if item.problem is None
        else FileReport(path=item.path, format=None, status=Status.ERROR, error=item.problem)
        for item in inputs
    ]


def _is_url(arg: str) -> bool:
    # only an argument with "://" can be remote: initaudit.remote (the fsspec glue, the largest
    # module of the package) is imported for those alone, not on every local audit
    if "://" not in arg:
        return False
    from .remote import is_remote

    return is_remote(arg)


def _remote_inputs(arg: str) -> list[Input]:
    """A remote argument as discovery Inputs: its checkpoints, or one Input with the problem."""
    from .discover import Input
    from .model import LoadError
    from .remote import expand

    try:
        return [Input(url) for url in expand(arg)]
    except LoadError as exc:
        return [Input(arg, str(exc))]


def _dedupe(inputs: list[Input]) -> list[Input]:
    seen: set[str] = set()
    out = []
    for item in inputs:
        key = (
            item.path if item.problem is not None else os.path.normcase(os.path.abspath(item.path))
        )
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _iterate(
    paths: Sequence[str], configs: Sequence[AuditConfig], workers: int, bar: _Bar | None
) -> Iterator[FileReport]:
    if workers <= 1:
        for path, config in zip(paths, configs):
            if bar is not None:
                bar.describe(path)
            yield _audit(path, config)
        return
    # the CPUs are shared out between the files running at once: each file's own tensor workers
    # (engine.py) get their share, not one per CPU each (2 files x 2 forked workers on 2 cores)
    from .engine import available_cpus

    share = max(1, available_cpus() // workers)
    configs = [c if c.workers else dataclasses.replace(c, workers=share) for c in configs]
    # imported here: multiprocessing and its sockets cost start-up a one-file audit never uses
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        # chunksize 1: files differ wildly in size; one big file must not hold back a batch
        yield from pool.map(_worker, list(zip(paths, configs)), chunksize=1)


def _stderr_is_terminal() -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _Bar:
    """A transient rich progress bar on stderr, redrawn when a file starts or ends: without rich's
    refresh thread, so a large local file can still fork its workers (forkpool.py)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("auditing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
            transient=True,
            auto_refresh=False,
        )
        self._task = self._progress.add_task("", total=total)
        self._progress.start()
        self._progress.refresh()

    def describe(self, path: str) -> None:
        self._progress.update(self._task, description=os.path.basename(path), refresh=True)

    def advance(self, path: str) -> None:
        self._progress.update(self._task, advance=1, refresh=True)

    def stop(self) -> None:
        self._progress.stop()


__all__ = ["audit_all", "audit_inputs", "collect_inputs", "configs_for", "effective_jobs"]
