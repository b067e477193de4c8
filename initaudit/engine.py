"""The audit pipeline: load -> analyse each tensor -> run the rules -> FileReport.

Everything the CLI does goes through here (the CLI is a thin layer over this module and
:mod:`initaudit.api`).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Iterable

from .activations import ActivationHint
from .model import LoadedModel, LoadError, Role, WeightTensor
from .report import FileReport, Finding, Severity, Status, TensorReport

# roles whose values an init scheme is about
SCHEMED_ROLES = frozenset({Role.KERNEL, Role.RECURRENT, Role.EMBEDDING})


@dataclass(frozen=True)
class TensorIgnore:
    """A per-tensor suppression: glob over tensor/layer names (and optionally file paths)."""

    pattern: str
    rules: tuple[str, ...]  # codes or names; empty = all
    reason: str
    path: str | None = None  # glob over the checkpoint path; None = any file

    def applies(self, finding: Finding, file_path: str) -> bool:
        if self.path is not None and not (fnmatch.fnmatch(file_path, self.path)
                                          or fnmatch.fnmatch(os.path.basename(file_path), self.path)):
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


def _rule_enabled(code: str, name: str, config: AuditConfig) -> bool:
    keys = {code, name}
    if config.select and not any(_matches_selector(k, s) for k in keys for s in config.select):
        return False
    return not any(_matches_selector(k, s) for k in keys for s in config.ignore)


def _matches_selector(key: str, selector: str) -> bool:
    # ruff-style prefixes: "IA1" selects IA101, IA102...; names match exactly
    return key == selector or (selector.upper().startswith("IA") and key.startswith(selector.upper()))


def analyse(model: LoadedModel, config: AuditConfig = AuditConfig()) -> FileReport:
    """Run the analysis and the rules on an already loaded model."""
    from .analysis.identify import identify
    from .analysis.stats import sampled_stats
    from .analysis.units import check_units, UnitCheck
    from .rules import registry
    from .rules.base import RuleContext, TensorAnalysis

    report = FileReport(path=model.path, format=model.format, status=Status.OK,
                        framework=model.framework)
    report.notes.extend(model.notes)
    for name, reason in model.skipped:
        report.skipped.append({"name": name, "reason": reason})

    layer_of = {id(t): layer for layer in model.layers for t in layer.tensors}
    analyses: list[TensorAnalysis] = []
    for tensor in model.tensors():
        layer = layer_of.get(id(tensor))
        activation = layer.activation if layer is not None else None
        try:
            values = tensor.load()
            stats, sample = sampled_stats(values, max_sample=config.max_sample, seed=config.seed)
            units = check_units(values, tensor) if tensor.role in SCHEMED_ROLES else UnitCheck.empty()
            scheme = (identify(values, tensor, stats, seed=config.seed, metadata=model.metadata,
                               sample=sample)
                      if tensor.role in SCHEMED_ROLES and stats.size >= 2 else None)
            sample = None
        except LoadError as exc:
            report.skipped.append({"name": tensor.name, "reason": str(exc)})
            report.tensors.append(_tensor_report(tensor, activation, None, None, skipped=str(exc)))
            continue
        finally:
            values = None  # drop the reference: memmaps close as we go
        analyses.append(TensorAnalysis(tensor=tensor, layer=layer, stats=stats, scheme=scheme,
                                       units=units))
        report.tensors.append(_tensor_report(tensor, activation, stats, scheme))

    rules = [r for r in registry().values() if _rule_enabled(r.code, r.name, config)]
    base = RuleContext(model=model, analyses=tuple(analyses))
    findings: list[Finding] = []
    for r in rules:
        if r.scope == "model":
            findings.extend(r.check(base))
        else:
            for a in analyses:
                findings.extend(r.check(RuleContext(model=model, analyses=base.analyses, current=a)))
    report.findings = _post_process(_drop_superseded(findings, rules), config, model.path)

    unknown = [layer.name for layer in model.layers
               if layer.activation is None and layer.kernel is not None]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        report.notes.append(
            f"activation unknown for {len(unknown)} layer(s) ({shown}): scheme/activation pairing "
            "rules were not applied to them; give --activation 'PATTERN=ACT' to check them")
    if report.skipped or model.unsafe:
        report.status = Status.PARTIAL
    return report


def _drop_superseded(findings: list[Finding], rules: list) -> list[Finding]:
    """Drop a finding when a rule that supersedes it fired on the same tensor (one problem,
    one finding: vanishing-init already explains why no scheme fits N(0, 1e-4))."""
    superseded_by = {r.code: set(r.superseded_by) for r in rules if r.superseded_by}
    if not superseded_by:
        return findings
    fired = {(f.code, f.tensor) for f in findings if f.tensor}
    return [f for f in findings
            if not any((code, f.tensor) in fired for code in superseded_by.get(f.code, ()))]


def _post_process(findings: Iterable[Finding], config: AuditConfig, path: str) -> list[Finding]:
    out: list[Finding] = []
    for f in findings:
        if f.confidence < config.min_confidence:
            continue
        if any(ig.applies(f, path) for ig in config.tensor_ignores):
            continue
        override = config.severity_overrides.get(f.code) or config.severity_overrides.get(f.name)
        if override is not None and override is not f.severity:
            f = Finding(code=f.code, name=f.name, severity=override, confidence=f.confidence,
                        message=f.message, tensor=f.tensor, layer=f.layer, evidence=f.evidence)
        out.append(f)
    # deterministic order: severity first, then rule, then tensor
    out.sort(key=lambda f: (-f.severity.rank, f.code, f.tensor or "", f.layer or ""))
    return out


def _tensor_report(tensor: WeightTensor, activation, stats, scheme, skipped: str | None = None) -> TensorReport:
    return TensorReport(name=tensor.name, layer=tensor.layer, op=tensor.op, role=tensor.role.value,
                        shape=tuple(int(d) for d in tensor.shape), dtype=tensor.dtype,
                        fan_in=tensor.fan_in, fan_out=tensor.fan_out,
                        activation=activation.label if activation is not None else None,
                        activation_source=activation.source if activation is not None else None,
                        stats=stats, scheme=scheme, skipped=skipped)


def audit_path(path: str | os.PathLike[str], config: AuditConfig = AuditConfig()) -> FileReport:
    """Load and analyse one file. Never raises for a bad file: status=error with one line."""
    from .loaders import LoadOptions, load

    spath = os.fspath(path)
    try:
        model = load(spath, LoadOptions(hints=config.hints))
    except LoadError as exc:
        return FileReport(path=spath, format=None, status=Status.ERROR, error=str(exc))
    except MemoryError:
        return FileReport(path=spath, format=None, status=Status.ERROR,
                          error="ran out of memory while reading (declared sizes too large?)")
    except RecursionError:
        return FileReport(path=spath, format=None, status=Status.ERROR,
                          error="structure nested too deeply to read safely")
    except Exception as exc:  # a loader bug must still not become a traceback for the user
        return FileReport(path=spath, format=None, status=Status.ERROR,
                          error=f"could not be read ({type(exc).__name__}: {exc})")
    try:
        return analyse(model, config)
    except LoadError as exc:
        return FileReport(path=spath, format=model.format, status=Status.ERROR, error=str(exc))
