"""The analysis's typed results: what one tensor's statistics and scheme identification found.

Small frozen dataclasses (scipy-style result objects), typed end to end and turned into the JSON
report's fields only by ``to_dict``. They sit at the bottom of the layers (docs/architecture.md):
the analysis produces them, the rules read them, the report carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
