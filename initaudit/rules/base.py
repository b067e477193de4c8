"""The rule interface: one rule per module, a pure function of its context yielding findings.

Codes never change once assigned (they are what CI users script against):

- IA1xx  scheme / activation pairing
- IA2xx  broken weights (symmetry, non-finite values)
- IA3xx  scale and location
- IA4xx  identification
- IA5xx  safety of the file itself
- IA6xx  model-level analyses (signal propagation)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..analysis.units import UnitCheck
from ..model import Layer, LoadedModel, WeightTensor
from ..report import Finding, SchemeResult, Severity, TensorStats


@dataclass(frozen=True)
class TensorAnalysis:
    """Everything computed about one tensor before the rules run."""

    tensor: WeightTensor
    layer: Layer | None
    stats: TensorStats
    scheme: SchemeResult | None  # None for roles that have no init scheme (biases, norms)
    units: UnitCheck
    state: Any = None  # analysis.state.StateResult: trained / initialized / unknown, or None


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: one analysed tensor (or None for model-level rules) and the model."""

    model: LoadedModel
    analyses: tuple[TensorAnalysis, ...]
    current: TensorAnalysis | None = None
    options: dict[str, Any] = field(default_factory=dict)
    file_state: Any = None  # analysis.state.StateResult of the whole file, or None
    signal: Any = None  # analysis.signal.SignalReport, or None when the file has no graph

    @property
    def file_trained(self) -> bool:
        """The file as a whole looks trained: init-pairing rules step back."""
        return self.file_state is not None and getattr(self.file_state, "trained", False)

    def trained(self, analysis: TensorAnalysis | None = None) -> bool:
        """This tensor (default: the current one) or the whole file looks trained."""
        a = analysis if analysis is not None else self.current
        tensor_trained = a is not None and a.state is not None and getattr(a.state, "trained", False)
        return tensor_trained or self.file_trained

    def analysis_of(self, layer_name: str) -> TensorAnalysis | None:
        for a in self.analyses:
            if a.layer is not None and a.layer.name == layer_name and a.tensor is a.layer.kernel:
                return a
        return None


Check = Callable[[RuleContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str  # one line, shown by `initaudit rules`
    scope: str  # "tensor": called once per analysed tensor; "model": once per file
    check: Check
    # codes of rules that, when they fire on the same tensor, already explain this finding
    superseded_by: tuple[str, ...] = ()

    def finding(self, message: str, *, confidence: float, tensor: WeightTensor | None = None,
                layer: str | None = None, severity: Severity | None = None,
                **evidence: Any) -> Finding:
        return Finding(code=self.code, name=self.name, severity=severity or self.severity,
                       confidence=max(0.0, min(1.0, float(confidence))), message=message,
                       tensor=tensor.name if tensor is not None else None,
                       layer=layer if layer is not None else (tensor.layer if tensor else None),
                       evidence=evidence)


_REGISTRY: dict[str, Rule] = {}


def rule(*, code: str, name: str, severity: Severity, summary: str, scope: str = "tensor",
         superseded_by: tuple[str, ...] = ()) -> Callable[[Callable[[Rule, RuleContext], Iterator[Finding]]], Rule]:
    """Declare a rule. The decorated function receives the Rule itself and the context."""

    def register(fn: Callable[[Rule, RuleContext], Iterator[Finding]]) -> Rule:
        if code in _REGISTRY or any(r.name == name for r in _REGISTRY.values()):
            raise RuntimeError(f"duplicate rule {code} / {name}")
        holder: list[Rule] = []
        r = Rule(code=code, name=name, severity=severity, summary=summary, scope=scope,
                 check=lambda ctx: fn(holder[0], ctx), superseded_by=superseded_by)
        holder.append(r)
        _REGISTRY[code] = r
        return r

    return register


def registry() -> dict[str, Rule]:
    return dict(sorted(_REGISTRY.items()))
