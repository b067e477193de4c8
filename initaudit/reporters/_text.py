"""Formatting shared by the reporters and `initaudit inspect`: one spelling of a number and one
JSON fallback everywhere."""

from __future__ import annotations

import math
from typing import Any


def num(x: float | None) -> str:
    """Three significant digits; NaN/Inf spelled out; None as '?'."""
    if x is None:
        return "?"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def json_fallback(obj: Any) -> Any:
    """json.dumps(default=...): evidence may carry numpy arrays or enums; keep the document valid."""
    from ..analysis.results import _jsonable

    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if hasattr(obj, "value"):
        return obj.value
    return str(obj)


def evidence_text(evidence: dict[str, Any]) -> str:
    """A scheme's evidence as one line of words (inspect, the HTML report)."""
    parts = []
    for key, value in evidence.items():
        label = {
            "gof_pvalue": "KS/GOF p",
            "std_interval_95": "std 95%",
            "orthogonality_error": "orthogonality error",
        }.get(key, key.replace("_", " "))
        parts.append(f"{label} {evidence_value(value)}")
    return " · ".join(parts)


def evidence_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {evidence_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(evidence_value(x) for x in v) + "]"
    if isinstance(v, float) or (hasattr(v, "dtype") and hasattr(v, "item")):
        try:
            return num(float(v))
        except (TypeError, ValueError):
            return str(v)
    return str(v)
