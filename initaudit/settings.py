"""What an audit is asked to do: the settings every layer may read.

:class:`AuditConfig` is built by the CLI (from flags and the nearest config file), by
:func:`initaudit.audit` (from keyword arguments) or by the pytest helper, and read by the engine
and the reporters. It lives here, below the engine, so that a reporter never imports the engine.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .activations import ActivationHint
from .report import Finding, Severity


@dataclass(frozen=True)
class TensorIgnore:
    """A per-tensor suppression: glob over tensor/layer names (and optionally file paths)."""

    pattern: str
    rules: tuple[str, ...]  # codes or names; empty = all
    reason: str
    path: str | None = None  # glob over the checkpoint path; None = any file

    def applies(self, finding: Finding, file_path: str) -> bool:
        if self.path is not None and not (
            fnmatch.fnmatch(file_path, self.path)
            or fnmatch.fnmatch(os.path.basename(file_path), self.path)
        ):
            return False
        names = [n for n in (finding.tensor, finding.layer) if n]
        if not names and self.pattern not in ("*", "**"):
            return False
        if names and not any(fnmatch.fnmatchcase(n, self.pattern) for n in names):
            return False
        return not self.rules or finding.code in self.rules or finding.name in self.rules


@dataclass(frozen=True)
class AuditConfig:
    select: tuple[str, ...] = ()  # codes or names; empty = all rules
    ignore: tuple[str, ...] = ()
    fail_on: Severity = Severity.ERROR
    min_confidence: float = 0.0  # findings below are dropped
    hints: tuple[ActivationHint, ...] = ()
    severity_overrides: dict[str, Severity] = field(default_factory=dict)  # code/name -> severity
    tensor_ignores: tuple[TensorIgnore, ...] = ()
    # statistics are computed on at most this many elements (a reproducible sample)
    max_sample: int = 1 << 20
    seed: int = 0
    # wall-clock budget for the per-tensor analysis (None: no limit). Checked before each tensor
    # starts; tensors not reached are reported as skipped ("time budget exhausted") and the file
    # status is partial, never a silent partial "clean".
    max_seconds: float | None = None
    # called on the calling thread, in model order, once per tensor finished (or skipped)
    progress: Callable[[TensorProgress], None] | None = field(default=None, compare=False)
    # tensors analysed at once: 0 = one per CPU this process may use (a cgroup quota counts).
    # Forked worker processes where the format allows (engine.fork_workers); threads otherwise,
    # at most 8 (the GIL bounds them: engine.THREAD_MAX_WORKERS). Peak memory is `workers`
    # tensors' working sets.
    workers: int = 0
    # run ONNX models with onnxruntime (the optional [probe] extra) and put the measured
    # activation std per layer next to the signal-propagation prediction
    probe: bool = False
    # remote safetensors, torch zip, GGUF, ONNX external data: fetch only sampled byte ranges of
    # each tensor (initaudit.remote); the rules that need every element (FULL_PASS_RULES) are
    # then reported as not applied
    sample_only: bool = False
    # results cache folder (initaudit.cache): unchanged files are answered from it
    cache_dir: str | None = None


BUDGET_REASON = "time budget exhausted"
# rules whose verdict needs every element of a tensor: not applied to tensors read as a sample
# (a NaN, a dead or a duplicated unit may sit in the rows never fetched)
FULL_PASS_RULES = ("nonfinite-weights", "duplicate-neurons", "dead-units")
# LoadedModel.metadata key a loader sets when its tensors return samples, not whole tensors
SAMPLED_KEY = "sampled_only"


@dataclass(frozen=True)
class TensorProgress:
    """One step of the per-tensor loop, for progress bars."""

    index: int  # 1-based: tensors finished so far, this one included
    total: int
    name: str
    nbytes: int  # this tensor's stored size (elements x itemsize, from its shape and dtype)
    done_bytes: int  # bytes of the tensors finished so far, this one included
    total_bytes: int
    elapsed: float  # seconds since the loop started
    skipped: str | None = None  # the reason, when the tensor was not analysed
