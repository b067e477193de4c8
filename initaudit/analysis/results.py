"""The analysis's typed results: one tensor's statistics, scheme, unit checks and state, and the
file's signal propagation.

Small frozen dataclasses (scipy-style result objects), typed end to end and turned into the JSON
report's fields only by ``to_dict``. They sit at the bottom of the layers (docs/architecture.md):
the analysis produces them, the rules read them, the report carries them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

# the band of the cumulative second moment q (network input = 1) a signal is said to leave
# (SignalReport.forward_exit / backward_exit; analysis/signal.py)
BAND = (1e-2, 1e2)


class KeyedReads:
    """Read access by JSON key (``record["name"]``, ``record.get(...)``, ``key in record``) for
    callers of the Python API written when these records were plain dicts. The records are typed
    (read their attributes); the keys are those of ``to_dict``, the one serialisation."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def keys(self) -> Any:
        return self.to_dict().keys()

    def items(self) -> Any:
        return self.to_dict().items()

    def values(self) -> Any:
        return self.to_dict().values()

    def __iter__(self) -> Any:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True)
class TensorStats:
    n: int  # number of elements the moments were computed on (a sample for big tensors)
    size: int  # number of elements in the tensor
    mean: float
    std: float
    min: float
    max: float
    excess_kurtosis: float
    sampled: bool = False
    nonfinite: int = 0  # NaN or Inf count over the full tensor
    nan: int = 0  # of those, the NaNs (nonfinite - nan are infinities)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "size": self.size,
            "mean": _num(self.mean),
            "std": _num(self.std),
            "min": _num(self.min),
            "max": _num(self.max),
            "excess_kurtosis": _num(self.excess_kurtosis),
            "sampled": self.sampled,
            "nonfinite": self.nonfinite,
            "nan": self.nan,
        }


@dataclass(frozen=True)
class Candidate:
    """One scheme that could have produced a tensor: a rule, a family, a mode and a gain."""

    rule: str  # he, glorot, lecun, torch_default, orthogonal, fixed, zeros, constant
    distribution: str  # normal, truncated_normal, uniform, orthogonal, constant
    mode: str | None  # fan_in, fan_out, fan_avg, or None (fixed/orthogonal/constant)
    gain: float
    expected_std: float
    label: str  # human name: "kaiming_normal(fan_in)", "torch default U(±1/sqrt(fan_in))"
    source: str | None = None  # framework convention that names it: "torch", "keras", "hf"...

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "distribution": self.distribution,
            "mode": self.mode,
            "gain": _num(self.gain),
            "expected_std": _num(self.expected_std),
            "label": self.label,
        }


# SchemeResult.rule and Candidate.rule: every name the identification can give (the table rows
# in schemes.py, the fixed/structured/constant cases in identify.py); JSON $defs/rule
SCHEME_RULES = (
    "he",
    "glorot",
    "lecun",
    "torch_default",
    "orthogonal",
    "fixed",
    "zeros",
    "constant",
    "unknown",
    "variance_scaling",
    "identity",
    "dirac",
    "sparse",
)
# SchemeResult.distribution and Candidate.distribution; JSON $defs/distribution
SCHEME_DISTRIBUTIONS = (
    "normal",
    "truncated_normal",
    "uniform",
    "orthogonal",
    "constant",
    "unknown",
    "structured",
)


@dataclass(frozen=True)
class SchemeResult:
    """Which scheme a kernel matches, how sure we are, and what else is equally consistent."""

    rule: str  # "unknown" when nothing fits
    distribution: str  # "unknown" when the family cannot be told
    mode: str | None
    gain: float | None
    expected_std: float | None
    confidence: float  # 0..1: posterior weight of the identified rule and family
    label: str
    # other candidates consistent with the data (same predicted variance within the interval)
    alternatives: tuple[Candidate, ...] = ()
    # evidence, in numbers: scale interval, family goodness-of-fit p-value, orthogonality error
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.rule != "unknown"

    def rules(self) -> set[str]:
        """The identified rule and every consistent alternative's rule."""
        return {self.rule, *(c.rule for c in self.alternatives)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "distribution": self.distribution,
            "mode": self.mode,
            "gain": _num(self.gain),
            "expected_std": _num(self.expected_std),
            "confidence": round(float(self.confidence), 4),
            "label": self.label,
            "alternatives": [c.to_dict() for c in self.alternatives],
            "evidence": {k: _jsonable(v) for k, v in self.evidence.items()},
        }


@dataclass(frozen=True)
class UnitCheck:
    """Full-pass checks on a tensor's output units (analysis/units.py)."""

    n_units: int
    constant: bool  # every (finite) entry of the tensor equal
    constant_value: float | None
    # groups of unit indices with identical weights (each group has >= 2 members)
    duplicate_groups: tuple[tuple[int, ...], ...] = ()
    dead_units: tuple[int, ...] = ()  # all-zero units (in a tensor that is not all zero)

    @classmethod
    def empty(cls) -> UnitCheck:
        return cls(n_units=0, constant=False, constant_value=None)


class State(str, enum.Enum):
    """Trained or freshly initialized (analysis/state.py). JSON ``state.state``."""

    INITIALIZED = "initialized"
    TRAINED = "trained"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class StateResult(KeyedReads):
    """A tensor's or a file's state with its evidence (analysis/state.py)."""

    state: State
    confidence: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.state is State.TRAINED

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "confidence": round(float(self.confidence), 4),
            "reason": self.reason,
            "evidence": _jsonable(dict(self.evidence)),
        }


@dataclass(frozen=True)
class LayerSignal(KeyedReads):
    """One layer of the signal-propagation prediction (analysis/signal.py)."""

    layer: str
    op: str
    activation: str | None  # None = unknown (counted as linear)
    fan_in: int
    fan_out: int
    weight_second_moment: float  # E[w²]
    q_in: float  # second moment of the layer's input (network input = 1)
    q_pre: float  # of the pre-activation (after normalization when there is one)
    q_out: float  # after activation (and residual Add): the cumulative forward figure
    forward_gain: float  # q_out / q_in
    backward_gain: float  # per-unit gradient second moment, input side / output side
    grad_in: float | None = None  # cumulative backward figure (output gradient = 1)
    normalized: bool = False
    residual: bool = False
    note: str | None = None
    measured_std: float | None = None  # filled by the optional onnxruntime probe

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})
        return out


@dataclass
class SignalReport(KeyedReads):
    """Per-layer forward/backward variance propagation (analysis/signal.py); the optional
    onnxruntime probe (probe.py) fills ``LayerSignal.measured_std`` and ``probe``."""

    layers: list[LayerSignal] = field(default_factory=list)
    band: tuple[float, float] = BAND
    forward_exit: str | None = None  # first layer whose cumulative q leaves the band
    backward_exit: str | None = None
    unknown_activations: int = 0
    probe: dict[str, Any] | None = None  # {"tolerance":..., "agrees":..., ...} when probed

    @property
    def final_q(self) -> float | None:
        return self.layers[-1].q_out if self.layers else None

    def extreme(self) -> LayerSignal | None:
        """The layer whose cumulative q is furthest from 1 (log scale)."""
        if not self.layers:
            return None
        return max(self.layers, key=lambda s: abs(math.log10(max(s.q_out, 1e-300))))

    def layer(self, name: str) -> LayerSignal | None:
        for s in self.layers:
            if s.layer == name:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "band": list(self.band),
            "forward_exit": self.forward_exit,
            "backward_exit": self.backward_exit,
            "unknown_activations": self.unknown_activations,
            "final_q": _jsonable(self.final_q),
            "layers": [s.to_dict() for s in self.layers],
            "probe": _jsonable(self.probe) if self.probe is not None else None,
        }


def _num(x: float | None) -> float | None | str:
    """JSON-safe float: NaN/Inf become strings (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return x


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if getattr(v, "ndim", 0) and hasattr(v, "tolist"):  # numpy array (evidence may hold one)
        return _jsonable(v.tolist())
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        return _jsonable(v.item())
    return v
