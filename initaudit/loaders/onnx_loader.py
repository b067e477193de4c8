"""Compatibility import: the ONNX loader is the package :mod:`initaudit.loaders.onnx`."""

from __future__ import annotations

from .onnx import from_proto, load

__all__ = ["from_proto", "load"]
