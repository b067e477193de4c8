"""The audit pipeline: load -> analyse each tensor -> run the rules -> FileReport.

Everything the CLI does goes through here (the CLI is a thin layer over this module and
:mod:`initaudit.api`).
"""

from __future__ import annotations

import math
import mmap
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .accounting import account, categorise
from .analysis.results import SchemeResult, TensorStats
from .model import (
    SCHEMED_ROLES,
    Activation,
    LoadedModel,
    LoadError,
    SkippedTensor,
    SkipReason,
    WeightTensor,
)
from .report import Coverage, FileReport, Finding, Status, TensorReport
from .selector import RuleSelector

# the settings live in .settings (every layer may read them); re-exported for the engine's callers
from .settings import (
    BUDGET_REASON,
    FULL_PASS_RULES,
    SAMPLED_KEY,
    AuditConfig,
    TensorIgnore,
    TensorProgress,
)

if TYPE_CHECKING:  # pragma: no cover - imported where a thread pool is made (start-up)
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "BUDGET_REASON",
    "FULL_PASS_RULES",
    "SAMPLED_KEY",
    "SCHEMED_ROLES",
    "AuditConfig",
    "TensorIgnore",
    "TensorProgress",
    "analyse",
    "audit_file",
    "audit_loaded",
    "audit_path",
]


def _rule_enabled(code: str, name: str, config: AuditConfig) -> bool:
    return RuleSelector(config.select, config.ignore).enabled(code, name)


def analyse(model: LoadedModel, config: AuditConfig = AuditConfig()) -> FileReport:
    """Run the analysis and the rules on an already loaded model."""
    import numpy as np

    from .analysis.conventions import enrich_metadata
    from .analysis.identify import identify
    from .analysis.results import UnitCheck
    from .analysis.signal import propagate
    from .analysis.state import classify_file, classify_tensor
    from .analysis.tensorpass import TensorPass, run_pass
    from .analysis.units import check_units
    from .rules import registry
    from .rules.base import RuleContext, Scope, TensorAnalysis

    report = FileReport(
        path=model.path, format=model.format, status=Status.OK, framework=model.framework
    )
    report.notes.extend(model.notes)
    for name, reason in model.skipped:
        report.skipped.append(_skip_entry(name, reason, categorise(name, reason, model)))

    enrich_metadata(model)  # facts identification needs (depth for GPT-2's residual scaling)
    layer_of = {id(t): layer for layer in model.layers for t in layer.tensors}
    sampled_only = bool(model.metadata.get(SAMPLED_KEY))
    analyses: list[TensorAnalysis] = []
    failed: list[WeightTensor] = []  # tried but not finished (unreadable, time budget)

    def work(tensor: WeightTensor) -> tuple[Any, ...]:
        values = tensor.load()
        if isinstance(values, np.memmap):
            _prefetch(values)
            # a plain view of the same pages: memmap's __getitem__/__array_finalize__ cost per call
            values = values.view(np.ndarray)
        tp: TensorPass | None = None
        sample: np.ndarray | None = None
        try:
            schemed = tensor.role in SCHEMED_ROLES
            # one fused read of the tensor: exact stats and the unit projections
            tp = run_pass(
                values, tensor, schemed=schemed, max_sample=config.max_sample, seed=config.seed
            )
            stats, sample = tp.stats, tp.sample
            units = (
                check_units(values, tensor, stats, projections=tp.unit_projections)
                if schemed and not sampled_only
                else UnitCheck.empty()
            )
            scheme = (
                identify(
                    values,
                    tensor,
                    stats,
                    seed=config.seed,
                    metadata=model.metadata,
                    sample=sample,
                )
                if schemed and stats.size >= 2
                else None
            )
            state = (
                classify_tensor(values, tensor, stats, scheme, units, seed=config.seed)
                if tensor.role in SCHEMED_ROLES and stats.size >= 2
                else None
            )
            if sampled_only:
                # the moments are the sample's; size stays the tensor's, marked as sampled
                import dataclasses

                full = int(np.prod(tensor.shape, dtype=np.int64))
                if full != stats.size:
                    stats = dataclasses.replace(stats, size=full, sampled=True)
            return stats, units, scheme, state
        finally:
            # drop the references (memmaps close as we go); bound even when the pass raised
            del values
            sample = tp = None

    for tensor, outcome in _run_tensors(model.tensors(), work, config, fork_safe=model.fork_safe):
        layer = layer_of.get(id(tensor))
        activation = layer.activation if layer is not None else None
        if isinstance(outcome, str):  # LoadError message or the budget reason
            failed.append(tensor)
            cat = SkipReason.TIME_BUDGET if outcome == BUDGET_REASON else SkipReason.UNREADABLE
            report.skipped.append(_skip_entry(tensor.name, outcome, cat))
            report.tensors.append(_tensor_report(tensor, activation, None, None, skipped=outcome))
            continue
        stats, units, scheme, state = outcome
        analyses.append(
            TensorAnalysis(
                tensor=tensor, layer=layer, stats=stats, scheme=scheme, units=units, state=state
            )
        )
        report.tensors.append(_tensor_report(tensor, activation, stats, scheme))
        report.tensors[-1].state = state
    budget_skips = sum(1 for s in report.skipped if s.reason == BUDGET_REASON)
    if budget_skips:
        report.notes.append(
            f"time budget of {config.max_seconds:g} s exhausted: {budget_skips} tensor(s) were not "
            "analysed (listed as skipped); the findings cover only the tensors analysed"
        )

    file_state = classify_file(a.state for a in analyses if a.tensor.role in SCHEMED_ROLES)
    declared = model.metadata.get("declared_state")
    if isinstance(declared, dict) and declared.get("state") == "trained":
        # the container itself says so (GGUF is an export format for trained models): the
        # statistics stay as evidence, the verdict is the format's
        from .analysis.results import State, StateResult

        file_state = StateResult(
            State.TRAINED,
            0.99,
            str(declared.get("reason", "declared")),
            {**file_state.evidence, "statistical_verdict": file_state.state.value},
        )
    report.state = file_state
    signal = propagate(model, analyses)
    report.signal = signal
    if config.probe:  # measured next to the prediction (onnxruntime, the optional [probe] extra)
        from .probe import probe_step

        probe_step(model, report, seed=config.seed)
    rules = [r for r in registry().values() if _rule_enabled(r.code, r.name, config)]
    if sampled_only:
        left_out = [r for r in rules if r.name in FULL_PASS_RULES]
        rules = [r for r in rules if r.name not in FULL_PASS_RULES]
        if left_out:
            report.notes.append(
                "sample only: tensors were read as sampled byte ranges; rules that need every "
                "element were not applied: " + ", ".join(f"{r.code} {r.name}" for r in left_out)
            )
    base = RuleContext(model=model, analyses=tuple(analyses), file_state=file_state, signal=signal)
    findings: list[Finding] = []
    for r in rules:
        if r.scope is Scope.MODEL:
            findings.extend(r.check(base))
        else:
            for a in analyses:
                findings.extend(
                    r.check(
                        RuleContext(
                            model=model,
                            analyses=base.analyses,
                            current=a,
                            file_state=file_state,
                            signal=signal,
                        )
                    )
                )
    report.findings = _post_process(_drop_superseded(findings, rules), config, model.path)

    unknown = [
        layer.name
        for layer in model.layers
        if layer.activation is None and layer.kernel is not None
    ]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        report.notes.append(
            f"activation unknown for {len(unknown)} layer(s) ({shown}): scheme/activation pairing "
            "rules were not applied to them; give --activation 'PATTERN=ACT' to check them"
        )
    coverage = _apply_accounting(report, model, [a.tensor for a in analyses], failed)
    if report.skipped or model.unsafe or not coverage.complete:
        report.status = Status.PARTIAL
    return report


def _skip_entry(name: str, reason: str, category: SkipReason) -> SkippedTensor:
    return SkippedTensor(name, reason, category)


def _apply_accounting(
    report: FileReport, model: LoadedModel, analysed: list[WeightTensor], failed: list[WeightTensor]
) -> Coverage:
    """The one completeness check every loader goes through (accounting.account): coverage,
    plus a skipped entry for each weight-like stored tensor nobody analysed or reported."""
    acc = account(model, analysed, failed, (s.name for s in report.skipped))
    report.coverage = acc.coverage
    report.skipped.extend(acc.skipped)
    report.notes.extend(acc.notes)
    return acc.coverage


def _drop_superseded(findings: list[Finding], rules: list[Any]) -> list[Finding]:
    """Drop a finding when a rule that supersedes it fired on the same tensor (one problem,
    one finding: vanishing-init already explains why no scheme fits N(0, 1e-4))."""
    superseded_by = {r.code: set(r.superseded_by) for r in rules if r.superseded_by}
    if not superseded_by:
        return findings
    fired = {(f.code, f.tensor) for f in findings if f.tensor}
    return [
        f
        for f in findings
        if not any((code, f.tensor) in fired for code in superseded_by.get(f.code, ()))
    ]


def _nbytes(tensor: WeightTensor) -> int:
    import numpy as np

    n = 1
    for d in tensor.shape:
        n *= int(d)
    try:
        return n * np.dtype(tensor.dtype).itemsize
    except TypeError:  # bfloat16/float8 names numpy does not know: count 2/1 bytes
        return n * (1 if "8" in tensor.dtype else 2)


def _in_page_cache(values: Any) -> bool:
    """Whether a memory-mapped tensor's first, middle and last bytes are in the page cache, asked
    without touching the disk (a one-byte ``preadv`` with RWF_NOWAIT fails rather than wait).
    False whenever it cannot tell."""
    flag = getattr(os, "RWF_NOWAIT", None)
    name = getattr(values, "filename", None)
    start = getattr(values, "offset", None)
    if flag is None or not name or not isinstance(start, int) or not values.nbytes:
        return False
    try:
        fd = os.open(name, os.O_RDONLY)
    except OSError:
        return False
    try:
        byte = bytearray(1)
        for pos in (start, start + values.nbytes // 2, start + values.nbytes - 1):
            if os.preadv(fd, [byte], pos, flag) != 1:
                return False
        return True
    except OSError:  # BlockingIOError: not cached; EOPNOTSUPP: a filesystem that cannot say
        return False
    finally:
        os.close(fd)


def _prefetch(values: Any) -> None:
    """Ask the kernel to start reading a memory-mapped tensor now (MADV_WILLNEED on its own
    mapping: loaders map one tensor at a time). On a cold cache the disk then reads ahead of the
    chunk loop instead of faulting page by page. A tensor already in the page cache is left
    alone: there the advice only walks its pages (~10 ms per GB here, issue 14)."""
    mm = getattr(values, "_mmap", None)
    advice = getattr(mmap, "MADV_WILLNEED", None)
    if mm is None or advice is None or _in_page_cache(values):
        return
    try:
        mm.madvise(advice)
    except (AttributeError, OSError, ValueError):  # closed, or a platform without madvise
        pass


def cgroup_cpu_limit(
    proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"
) -> int | None:
    """CPUs the cgroup's CPU quota allows this process (rounded up), or None without a quota.

    A container limited to 4 CPUs on a 64-core host still shows 64 CPUs to ``sched_getaffinity``
    and ``os.cpu_count()``: workers sized on those would queue behind the quota. Reads cgroup v2
    (``cpu.max``: "max 100000" or "400000 100000") and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
    -1 for none) along the process's cgroup path and its parents; the tightest level wins."""
    try:
        with open(proc_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    files: tuple[str, ...]
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":  # cgroup v2: one unified hierarchy
            bases = [root]
            files = ("cpu.max",)
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own hierarchy
            bases = [os.path.join(root, controllers), os.path.join(root, "cpu")]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for base in bases:
            for depth in range(len(parts), -1, -1):
                limit = _cgroup_level_limit(os.path.join(base, *parts[:depth]), files)
                if limit is not None:
                    limits.append(limit)
    if not limits:
        return None
    return max(1, math.ceil(min(limits)))


def _cgroup_level_limit(directory: str, files: tuple[str, ...]) -> float | None:
    try:
        texts = []
        for name in files:
            with open(os.path.join(directory, name), encoding="utf-8") as fh:
                texts.append(fh.read().split())
    except OSError:
        return None
    try:
        if len(files) == 1:  # v2 cpu.max: "<quota|max> <period>"
            quota, period = texts[0][0], texts[0][1]
            return None if quota == "max" else int(quota) / int(period)
        quota_us, period_us = int(texts[0][0]), int(texts[1][0])
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (IndexError, ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, limit) if limit is not None else cpus)


# threads for one file's tensors: numpy releases the GIL in the per-chunk work (OpenBLAS pinned
# to one thread meanwhile), the per-tensor tests hold it; past ~8 threads nothing more overlaps
THREAD_MAX_WORKERS = 8


def default_workers() -> int:
    """Threads for the tensors of one file: the CPUs this process may use, at most
    THREAD_MAX_WORKERS (files scale across processes, --jobs). Forked workers are sized by
    :func:`fork_workers` instead."""
    return max(1, min(THREAD_MAX_WORKERS, available_cpus()))


# below this many bytes of tensors, forking workers costs more than it saves (measured: ~3 ms to
# fork and reap a child, against ~0.4 ms of analysis per MB of fp32 on one core)
FORK_MIN_BYTES = 32 << 20
# each forked worker beyond the first should have at least this much to read: its fork and reap
# (~3 ms) then cost under a tenth of its analysis
FORK_BYTES_PER_WORKER = 16 << 20
FORK_MAX_WORKERS = 64  # a sanity bound: forked workers share no GIL, each holds a few MB


def fork_workers(total_bytes: int, tensors: int) -> int:
    """Forked workers for one file when the config does not say: one per available CPU (no GIL
    between processes, so no cap of 8 as for threads), never more than the tensors or than the
    bytes keep busy (FORK_BYTES_PER_WORKER each)."""
    by_bytes = max(1, total_bytes // FORK_BYTES_PER_WORKER)
    return max(1, min(available_cpus(), FORK_MAX_WORKERS, tensors, by_bytes))


def _run_tensors(
    tensors: Iterable[WeightTensor],
    work: Callable[[WeightTensor], tuple[Any, ...]],
    config: AuditConfig,
    *,
    fork_safe: bool = False,
) -> Iterable[tuple[WeightTensor, tuple[Any, ...] | str]]:
    """(tensor, result or skip reason) in model order, computed by up to ``workers`` forked
    processes when the loader allows it (forkpool.py: the analysis holds the GIL too much for
    threads to pay), else by up to ``workers`` threads.

    The budget is checked when a tensor starts; a tensor already running is finished. Progress
    is reported here, on the caller's thread, in model order.
    """
    todo = list(tensors)
    sizes = [_nbytes(t) for t in todo]
    total_bytes = sum(sizes)
    start = time.monotonic()
    deadline = None if config.max_seconds is None else start + config.max_seconds

    def guarded(tensor: WeightTensor) -> tuple[Any, ...] | str:
        if deadline is not None and time.monotonic() > deadline:
            return BUDGET_REASON
        try:
            return work(tensor)
        except LoadError as exc:
            return str(exc)

    workers = config.workers or default_workers()
    from . import forkpool

    forked = fork_safe and total_bytes >= FORK_MIN_BYTES and forkpool.usable(workers, len(todo))
    if forked and not config.workers:
        workers = fork_workers(total_bytes, len(todo))
    pool: ThreadPoolExecutor | None = None
    if workers > 1 and len(todo) > 1 and not forked:
        # imported here: concurrent.futures (and logging with it) is start-up cost a one-tensor
        # or forked run never uses
        from concurrent.futures import ThreadPoolExecutor

        # the --jobs share of CPUs can exceed what threads use (the GIL): at most 8
        pool = ThreadPoolExecutor(max_workers=min(workers, THREAD_MAX_WORKERS))
    from .analysis.blas import single_threaded_blas

    blas = single_threaded_blas()  # our threads, not OpenBLAS's, use the cores (see blas.py)
    blas.__enter__()
    try:
        # a queued task holds no data (its tensor loads when it starts) and a finished one only
        # its small results, so memory is bounded by the `workers` tensors running at once
        results: Iterable[tuple[Any, ...] | str]
        if forked:
            results = forkpool.forked_map(guarded, todo, workers)
        elif pool is not None:
            results = pool.map(guarded, todo)
        else:
            results = map(guarded, todo)
        done_bytes = 0
        for i, (tensor, outcome) in enumerate(zip(todo, results)):
            done_bytes += sizes[i]
            if config.progress is not None:
                config.progress(
                    TensorProgress(
                        index=i + 1,
                        total=len(todo),
                        name=tensor.name,
                        nbytes=sizes[i],
                        done_bytes=done_bytes,
                        total_bytes=total_bytes,
                        elapsed=time.monotonic() - start,
                        skipped=outcome if isinstance(outcome, str) else None,
                    )
                )
            yield tensor, outcome
    except forkpool.WorkerError as exc:  # a worker killed (memory) or crashed: one line, exit 2
        raise LoadError(f"could not be analysed: {exc}") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        blas.__exit__(None, None, None)


def _post_process(findings: Iterable[Finding], config: AuditConfig, path: str) -> list[Finding]:
    out: list[Finding] = []
    for f in findings:
        if f.confidence < config.min_confidence:
            continue
        if any(ig.applies(f, path) for ig in config.tensor_ignores):
            continue
        override = config.severity_overrides.get(f.code) or config.severity_overrides.get(f.name)
        if override is not None and override is not f.severity:
            f = Finding(
                code=f.code,
                name=f.name,
                severity=override,
                confidence=f.confidence,
                message=f.message,
                tensor=f.tensor,
                layer=f.layer,
                evidence=f.evidence,
            )
        out.append(f)
    # deterministic order: severity first, then rule, then tensor
    out.sort(key=lambda f: (-f.severity.rank, f.code, f.tensor or "", f.layer or ""))
    return out


def _tensor_report(
    tensor: WeightTensor,
    activation: Activation | None,
    stats: TensorStats | None,
    scheme: SchemeResult | None,
    skipped: str | None = None,
) -> TensorReport:
    return TensorReport(
        name=tensor.name,
        layer=tensor.layer,
        op=tensor.op,
        role=tensor.role.value,
        shape=tuple(int(d) for d in tensor.shape),
        dtype=tensor.dtype,
        fan_in=tensor.fan_in,
        fan_out=tensor.fan_out,
        activation=activation.label if activation is not None else None,
        activation_source=activation.source if activation is not None else None,
        stats=stats,
        scheme=scheme,
        skipped=skipped,
    )


def audit_file(path: str | os.PathLike[str], config: AuditConfig = AuditConfig()) -> FileReport:
    """What the CLI runs per file (kept for callers; the probe is a step of :func:`analyse`)."""
    return audit_path(path, config)


def audit_path(path: str | os.PathLike[str], config: AuditConfig = AuditConfig()) -> FileReport:
    """Load and analyse one file. Never raises for a bad file: status=error with one line."""
    from .loaders import LoadOptions, load

    spath = os.fspath(path)
    if "://" in spath:  # only a URL can be remote: initaudit.remote (large) loads for those alone
        from .remote import audit_remote, is_remote

        if is_remote(spath):  # s3://, hf://, https://...: same analysis over ranged reads
            return audit_remote(spath, config)
    report = audit_loaded(spath, lambda: load(spath, LoadOptions(hints=config.hints)), config)
    if config.sample_only and report.status is not Status.ERROR:
        report.notes.append(
            "--sample-only applies to remote inputs read by ranged requests: this local "
            "file was read in full, every rule applied"
        )
    return report


def audit_loaded(
    spath: str, load_model: Callable[[], LoadedModel], config: AuditConfig = AuditConfig()
) -> FileReport:
    """:func:`audit_path` with the loading step given: every failure becomes status=error."""
    try:
        model = load_model()
    except LoadError as exc:
        # unsafe content found before the error (UnsafeLoadError) is still reported: the
        # framework would have run it before failing (issue 11, fail closed)
        from .rules.unsafe_content import findings_for

        return FileReport(
            path=spath,
            format=None,
            status=Status.ERROR,
            error=str(exc),
            findings=findings_for(getattr(exc, "unsafe", ())),
        )
    except MemoryError:
        return FileReport(
            path=spath,
            format=None,
            status=Status.ERROR,
            error="ran out of memory while reading (declared sizes too large?)",
        )
    except RecursionError:
        return FileReport(
            path=spath,
            format=None,
            status=Status.ERROR,
            error="structure nested too deeply to read safely",
        )
    except Exception as exc:  # a loader bug must still not become a traceback for the user
        return FileReport(
            path=spath,
            format=None,
            status=Status.ERROR,
            error=f"could not be read ({type(exc).__name__}: {exc})",
        )
    try:
        return analyse(model, config)
    except LoadError as exc:
        return FileReport(path=spath, format=model.format, status=Status.ERROR, error=str(exc))
    except MemoryError:
        return FileReport(
            path=spath,
            format=model.format,
            status=Status.ERROR,
            error="ran out of memory while analysing",
        )
    except Exception as exc:  # a bug in one file's analysis must not stop the other files
        if os.environ.get("INITAUDIT_DEBUG"):
            raise
        return FileReport(
            path=spath,
            format=model.format,
            status=Status.ERROR,
            error=f"internal error while analysing ({type(exc).__name__}: {exc}); "
            "re-run with INITAUDIT_DEBUG=1 for the traceback",
        )
