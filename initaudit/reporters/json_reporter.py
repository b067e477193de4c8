"""JSON reporter: the whole :class:`~initaudit.report.Report` as one JSON document.

The fields are :meth:`Report.to_dict`'s (a public contract, described by
``initaudit/schema/report.schema.json``), plus a ``config`` block saying which options produced
it. Output is deterministic: same input, same bytes. Non-finite numbers are the strings
``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no NaN). Sample::

    {
      "tool": {"name": "initaudit", "version": "0.1.0"},
      "summary": {"files": 1, "errors": 1, "warnings": 0, "infos": 0, "unreadable_files": 0,
                  "tensors": 4, "tensors_skipped": 0},
      "files": [
        {
          "path": "mlp.onnx", "format": "onnx", "status": "ok", "error": null,
          "framework": "pytorch",
          "tensors": [{"name": "fc1.weight", "layer": "fc1", "op": "Gemm", "role": "kernel",
                       "shape": [256, 784], "dtype": "float32", "fan_in": 784, "fan_out": 256,
                       "activation": "sigmoid", "activation_source": "graph",
                       "stats": {"n": 200704, "size": 200704, "mean": 0.0001, "std": 0.0505, ...},
                       "scheme": {"rule": "he", "distribution": "normal", "mode": "fan_in", ...},
                       "skipped": null}, ...],
          "findings": [{"code": "IA101", "name": "he-before-saturating", "severity": "error",
                        "confidence": 0.97, "tensor": "fc1.weight", "layer": "fc1",
                        "message": "...", "evidence": {...}}],
          "skipped": [], "notes": []
        }
      ],
      "config": {"fail_on": "error", "select": [], "ignore": [], "min_confidence": 0.0}
    }
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from ._text import json_fallback as _fallback

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report
    from ..settings import AuditConfig


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write ``result`` as indented JSON (``color``, ``verbose``, ``quiet`` do not apply)."""
    stream.write(dumps(result, config))
    stream.write("\n")


def dumps(result: Report, config: AuditConfig | None = None) -> str:
    data = result.to_dict()
    if config is not None:
        data["config"] = _config_dict(config)
    # allow_nan=False: a NaN that slipped past report._num must fail loudly here, not produce
    # a document other JSON parsers reject
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_fallback)


def _config_dict(config: AuditConfig) -> dict[str, Any]:
    return {
        "fail_on": config.fail_on.value,
        "select": list(config.select),
        "ignore": list(config.ignore),
        "min_confidence": config.min_confidence,
        "activation_hints": [f"{h.pattern}={h.activation.label}" for h in config.hints],
    }
