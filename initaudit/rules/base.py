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

import enum
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..analysis.results import SchemeResult, SignalReport, StateResult, TensorStats, UnitCheck
from ..model import Layer, LoadedModel, WeightTensor
from ..report import Finding, Severity


@dataclass(frozen=True)
class TensorAnalysis:
    """Everything computed about one tensor before the rules run."""

    tensor: WeightTensor
    layer: Layer | None
    stats: TensorStats
    scheme: SchemeResult | None  # None for roles that have no init scheme (biases, norms)
    units: UnitCheck
    state: StateResult | None = None  # trained / initialized / unknown, or None (not decided)


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: one analysed tensor (or None for model-level rules) and the model."""

    model: LoadedModel
    analyses: tuple[TensorAnalysis, ...]
    current: TensorAnalysis | None = None
    options: dict[str, Any] = field(default_factory=dict)
    file_state: StateResult | None = None  # the state of the whole file, or None
    signal: SignalReport | None = None  # None when the file has no graph

    @property
    def file_trained(self) -> bool:
        """The file as a whole looks trained: init-pairing rules step back."""
        return self.file_state is not None and self.file_state.trained

    def trained(self, analysis: TensorAnalysis | None = None) -> bool:
        """This tensor (default: the current one) or the whole file looks trained."""
        a = analysis if analysis is not None else self.current
        tensor_trained = a is not None and a.state is not None and a.state.trained
        return tensor_trained or self.file_trained

    def analysis_of(self, layer_name: str) -> TensorAnalysis | None:
        for a in self.analyses:
            if a.layer is not None and a.layer.name == layer_name and a.tensor is a.layer.kernel:
                return a
        return None


Check = Callable[[RuleContext], Iterable[Finding]]


class Family(str, enum.Enum):
    """A rule's family, fixed by the first digit of its code (the vocabulary SARIF tags, the
    rule index and ``--select IA1`` use). The value is the tag."""

    PAIRING = "activation-pairing"  # IA1xx: scheme / activation pairing
    BROKEN = "broken-weights"  # IA2xx: symmetry never breaks, non-finite values
    SCALE = "scale"  # IA3xx: scale and location
    IDENTIFICATION = "identification"  # IA4xx
    SECURITY = "security"  # IA5xx: safety of the file itself
    SIGNAL = "signal-propagation"  # IA6xx: model-level analyses

    @property
    def prefix(self) -> str:
        return _FAMILY_PREFIX[self]

    @property
    def title(self) -> str:  # type: ignore[override]  # str.title() is shadowed on purpose
        return _FAMILY_TITLE[self]

    @classmethod
    def of_code(cls, code: str) -> Family:
        for fam, prefix in _FAMILY_PREFIX.items():
            if code.upper().startswith(prefix):
                return fam
        raise ValueError(f"rule code {code!r} belongs to no family (IA1xx..IA6xx)")


_FAMILY_PREFIX = {
    Family.PAIRING: "IA1",
    Family.BROKEN: "IA2",
    Family.SCALE: "IA3",
    Family.IDENTIFICATION: "IA4",
    Family.SECURITY: "IA5",
    Family.SIGNAL: "IA6",
}
_FAMILY_TITLE = {
    Family.PAIRING: "scheme / activation pairing",
    Family.BROKEN: "broken weights (symmetry, non-finite values)",
    Family.SCALE: "scale and location",
    Family.IDENTIFICATION: "identification",
    Family.SECURITY: "safety of the file itself",
    Family.SIGNAL: "model-level analyses (signal propagation)",
}


class OnTrained(str, enum.Enum):
    """What a rule's error/warning becomes when the weights look trained (analysis/state.py).

    Init rules judge how weights were *initialized*; on a trained checkpoint that is history,
    and learnt weights legitimately break init statistics. Declared once per rule and applied
    by :meth:`Rule.run` with one wording, instead of each rule phrasing its own downgrade.
    """

    KEEP = "keep"  # the defect matters whatever the history (NaN, constant kernels, unsafe files)
    INFO = "info"  # downgraded to info, with TRAINED_NOTE appended
    SKIP = "skip"  # not reported at all (info-level rules whose only subject is the init)


TRAINED_NOTE = (
    " The weights look trained, so this describes learnt weights rather than their "
    "initialization (info only)."
)
# evidence key a rule sets on a finding that stays at its severity even on trained weights
# (exploding-init: a blow-up far beyond anything training produces)
KEEP_WHEN_TRAINED = "beyond_trained_bound"


class Scope(str, enum.Enum):
    """What a rule is called on (a str enum: `scope == "tensor"` keeps reading naturally)."""

    TENSOR = "tensor"  # once per analysed tensor
    MODEL = "model"  # once per file

    # printed as its value on every Python (an f-string gave "Scope.MODEL" on 3.11)
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str  # one line, shown by `initaudit rules`
    scope: Scope  # TENSOR: called once per analysed tensor; MODEL: once per file
    check: Check
    # codes of rules that, when they fire on the same tensor, already explain this finding
    superseded_by: tuple[str, ...] = ()
    on_trained: OnTrained = OnTrained.KEEP
    # the rule's own logic; ``check`` (what the engine calls) is this with the policy applied
    raw_check: Check | None = None

    @property
    def family(self) -> Family:
        return Family.of_code(self.code)

    def run(self, ctx: RuleContext) -> Iterator[Finding]:
        """The rule's findings with the trained-weights policy applied."""
        if self.raw_check is None:
            return
        for f in self.raw_check(ctx):
            out = self.apply_trained_policy(ctx, f)
            if out is not None:
                yield out

    def apply_trained_policy(self, ctx: RuleContext, f: Finding) -> Finding | None:
        """One place, one wording: a finding on weights that look trained."""
        if self.on_trained is OnTrained.KEEP or f.evidence.get(KEEP_WHEN_TRAINED):
            return f
        trained = ctx.trained() if self.scope is Scope.TENSOR else ctx.file_trained
        if not trained:
            return f
        if self.on_trained is OnTrained.SKIP:
            return None
        if f.severity is Severity.INFO:
            return f
        return replace(
            f,
            severity=Severity.INFO,
            message=f.message + TRAINED_NOTE,
            evidence={**f.evidence, "looks_trained": True},
        )

    def finding(
        self,
        message: str,
        *,
        confidence: float,
        tensor: WeightTensor | None = None,
        layer: str | None = None,
        severity: Severity | None = None,
        **evidence: Any,
    ) -> Finding:
        return Finding(
            code=self.code,
            name=self.name,
            severity=severity or self.severity,
            confidence=max(0.0, min(1.0, float(confidence))),
            message=message,
            tensor=tensor.name if tensor is not None else None,
            layer=layer if layer is not None else (tensor.layer if tensor else None),
            evidence=evidence,
        )


_REGISTRY: dict[str, Rule] = {}


def rule(
    *,
    code: str,
    name: str,
    severity: Severity,
    summary: str,
    scope: Scope = Scope.TENSOR,
    superseded_by: tuple[str, ...] = (),
    on_trained: OnTrained = OnTrained.KEEP,
) -> Callable[[Callable[[Rule, RuleContext], Iterator[Finding]]], Rule]:
    """Declare a rule. The decorated function receives the Rule itself and the context."""

    def register(fn: Callable[[Rule, RuleContext], Iterator[Finding]]) -> Rule:
        if code in _REGISTRY or any(r.name == name for r in _REGISTRY.values()):
            raise RuntimeError(f"duplicate rule {code} / {name}")
        Family.of_code(code)  # a code outside the families is a programming error
        holder: list[Rule] = []
        r = Rule(
            code=code,
            name=name,
            severity=severity,
            summary=summary,
            scope=Scope(scope),
            check=lambda ctx: holder[0].run(ctx),
            superseded_by=superseded_by,
            on_trained=on_trained,
            raw_check=lambda ctx: fn(holder[0], ctx),
        )
        holder.append(r)
        _REGISTRY[code] = r
        return r

    return register


# the two ways to declare a rule: called once per analysed tensor (``ctx.tensor`` is set), or
# once per file (the whole model: graph, signal, state)
tensor_rule = functools.partial(rule, scope=Scope.TENSOR)
model_rule = functools.partial(rule, scope=Scope.MODEL)


def registry() -> dict[str, Rule]:
    return dict(sorted(_REGISTRY.items()))
