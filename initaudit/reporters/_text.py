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
    from ..report import _jsonable

    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if hasattr(obj, "value"):
        return obj.value
    return str(obj)
