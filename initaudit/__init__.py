"""initaudit: a framework-agnostic linter for neural-network weight initialization.

``initaudit.audit(obj)`` audits a checkpoint path, an ``onnx.ModelProto``, a ``torch.nn.Module``,
a Keras model or a dict of numpy arrays and returns a :class:`initaudit.report.Report`.
Heavy modules are imported on first use so that importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "audit"]

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report


def audit(obj: Any, **options: Any) -> Report:
    """Audit ``obj``; see :func:`initaudit.api.audit` for the options."""
    from .api import audit as _audit

    return _audit(obj, **options)
