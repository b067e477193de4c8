"""Hand-written SVG charts for the HTML report: no plotting dependency, no script, no network.

Two charts: a histogram of a kernel's values with scheme densities overlaid
(:func:`histogram_svg`) and the predicted second moment of the signal per layer
(:func:`signal_svg`). Each SVG has ``role="img"``, a ``<title>`` and a ``<desc>`` in words; lines
differ by dash pattern and marker shape as well as colour, so nothing is told by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from ._density import Curve, pdf

if TYPE_CHECKING:  # pragma: no cover
    from ..analysis.results import LayerSignal

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies)
BAR = "#9ecae1"
BAR_EDGE = "#4a7fa5"
IDENTIFIED = "#0072b2"
SUGGESTED = "#d55e00"
MEASURED = "#009e73"
# dash patterns: the second signal next to colour
DASH = {"identified": "", "suggested": "6 4", "measured": "2 3"}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _attr(text: str) -> str:
    return escape(text, quote=True)


def curve_style(role: str) -> tuple[str, str]:
    """(stroke colour, dash array) of a curve role."""
    return (
        {"identified": IDENTIFIED, "suggested": SUGGESTED}.get(role, MEASURED),
        DASH.get(role, ""),
    )


def legend_swatch(role: str) -> str:
    """A small inline SVG line in the style of ``role``, for captions and legends."""
    colour, dash = curve_style(role)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<svg class="swatch" width="28" height="10" aria-hidden="true" focusable="false">'
        f'<line x1="1" y1="5" x2="27" y2="5" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
        f"</svg>"
    )


def histogram_svg(
    edges: np.ndarray,
    density: np.ndarray,
    curves: Sequence[Curve],
    *,
    title: str,
    desc: str,
    ident: str,
    width: int = 380,
    height: int = 190,
) -> str:
    """A histogram (bars, density scale) with each curve drawn as a line over it."""
    left, right, top, bottom = 10, 10, 10, 28
    pw, ph = width - left - right, height - top - bottom
    lo, hi = float(edges[0]), float(edges[-1])
    xs = np.linspace(lo, hi, 241)
    ys = [pdf(xs, c.distribution, c.std) for c in curves]
    ymax = max([float(density.max()) if density.size else 0.0] + [float(y.max()) for y in ys])
    ymax = ymax * 1.08 if ymax > 0 else 1.0

    def sx(x: float) -> float:
        return left + (x - lo) / (hi - lo) * pw

    def sy(y: float) -> float:
        return top + ph - min(y, ymax) / ymax * ph

    parts = [
        (
            f'<svg class="hist" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-labelledby="{ident}-t {ident}-d">'
        ),
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
    ]
    for i, d in enumerate(density):
        x0, x1 = sx(float(edges[i])), sx(float(edges[i + 1]))
        y = sy(float(d))
        if d > 0:
            parts.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{top + ph - y:.1f}" fill="{BAR}" stroke="{BAR_EDGE}" '
                f'stroke-width="0.5"/>'
            )
    for c, curve in zip(curves, ys):
        colour, dash = curve_style(c.role)
        pts = " ".join(f"{sx(float(a)):.1f},{sy(float(b)):.1f}" for a, b in zip(xs, curve))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"'
            f"{dash_attr}><title>{escape(c.label)}</title></polyline>"
        )
    # x axis: the range ends and zero
    base = top + ph
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" stroke="#333"/>')
    ticks = [lo, hi] + ([0.0] if lo < 0 < hi else [])
    for t in ticks:
        x = sx(t)
        anchor = "start" if t == lo else "end" if t == hi else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#333"/>'
            f'<text x="{x:.1f}" y="{base + 16}" font-size="11" text-anchor="{anchor}">'
            f"{_fmt(t)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def signal_svg(
    layers: Sequence[LayerSignal],
    *,
    band: Sequence[float] | None,
    title: str,
    desc: str,
    ident: str,
    width: int = 760,
    height: int = 260,
) -> str:
    """Predicted second moment of the signal after each layer (log scale), the measured one
    (``measured_std``², from ``--probe``) where present, and the healthy band shaded."""
    left, right, top, bottom = 56, 12, 12, 40
    pw, ph = width - left - right, height - top - bottom
    pred = [_positive(entry.q_out) for entry in layers]
    meas = [
        _positive(None if entry.measured_std is None else float(entry.measured_std) ** 2)
        for entry in layers
    ]
    values = [v for v in pred + meas if v is not None]
    if band:
        values += [float(band[0]), float(band[1])]
    if not values:
        values = [1.0]
    lo = math.floor(math.log10(min(values)))
    hi = math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo + 1
    n = max(len(layers), 1)

    def sx(i: int) -> float:
        return left + (i + 0.5) / n * pw

    def sy(v: float) -> float:
        return top + ph - (math.log10(v) - lo) / (hi - lo) * ph

    parts = [
        (
            f'<svg class="signal" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-labelledby="{ident}-t {ident}-d">'
        ),
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
    ]
    if band:
        y0, y1 = sy(float(band[1])), sy(float(band[0]))
        parts.append(
            f'<rect x="{left}" y="{y0:.1f}" width="{pw}" height="{y1 - y0:.1f}" '
            f'fill="#e8f5e9" stroke="#a5d6a7" stroke-dasharray="3 3">'
            f"<title>healthy band {_fmt(float(band[0]))} to {_fmt(float(band[1]))}</title></rect>"
        )
    for e in range(lo, hi + 1):  # decades
        y = sy(10.0**e)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"1e{e}</text>"
        )
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>'
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>'
    )
    for series, colour, dash, marker in (
        (pred, IDENTIFIED, "", "circle"),
        (meas, MEASURED, DASH["measured"], "square"),
    ):
        pts = [(sx(i), sy(v)) for i, v in enumerate(series) if v is not None]
        if not pts:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" '
            f'fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        for i, v in enumerate(series):
            if v is None:
                continue
            x, y = sx(i), sy(v)
            tip = f"{layers[i].layer}: {_fmt(v)}"
            if marker == "circle":
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                    f"<title>predicted {escape(tip)}</title></circle>"
                )
            else:
                parts.append(
                    f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" '
                    f'fill="none" stroke="{colour}" stroke-width="1.5">'
                    f"<title>measured {escape(tip)}</title></rect>"
                )
    step = max(1, math.ceil(n / 12))  # at most ~12 labels under the axis
    for i in range(0, len(layers), step):
        name = layers[i].layer
        short = name if len(name) <= 14 else "…" + name[-13:]
        parts.append(
            f'<text x="{sx(i):.1f}" y="{top + ph + 16}" font-size="10" '
            f'text-anchor="middle">{escape(short)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 4}" font-size="11" '
        f'text-anchor="middle">layer (graph order)</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _positive(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x > 0 and math.isfinite(x) else None


def change_bars_svg(
    items: Sequence[tuple[str, float | None, bool]],
    *,
    title: str,
    desc: str,
    ident: str,
    floor: float,
    width: int = 760,
    bar_height: int = 14,
) -> str:
    """One horizontal bar per tensor: its relative change on a log scale from ``floor``.
    Unchanged tensors are a hollow square at the axis (shape, not only colour)."""
    left, right, top = 220, 60, 22
    n = len(items)
    height = top + n * (bar_height + 4) + 8
    finite = [v for _, v, _ in items if v is not None and math.isfinite(v) and v > floor]
    lo = math.floor(math.log10(floor))
    hi = max(lo + 1, math.ceil(math.log10(max(finite)))) if finite else lo + 1
    pw = width - left - right

    def sx(v: float) -> float:
        v = min(max(v, 10.0**lo), 10.0**hi)
        return left + (math.log10(v) - lo) / (hi - lo) * pw

    parts = [
        (
            f'<svg class="changes" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-labelledby="{ident}-t {ident}-d">'
        ),
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
    ]
    for e in range(lo, hi + 1, max(1, (hi - lo) // 6)):
        x = sx(10.0**e)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 8}" '
            f'stroke="#ddd"/><text x="{x:.1f}" y="{top - 8}" font-size="10" '
            f'text-anchor="middle">1e{e}</text>'
        )
    for i, (name, rel, unchanged) in enumerate(items):
        value = math.inf if rel is None else float(rel)
        y = top + i * (bar_height + 4)
        short = name if len(name) <= 34 else "…" + name[-33:]
        parts.append(
            f'<text x="{left - 6}" y="{y + bar_height - 3}" font-size="11" '
            f'text-anchor="end">{escape(short)}</text>'
        )
        label = (
            "unchanged" if unchanged else (f"{value:.3g}" if math.isfinite(value) else "from zero")
        )
        if unchanged:
            parts.append(
                f'<rect x="{left + 1}" y="{y + 2}" width="{bar_height - 4}" '
                f'height="{bar_height - 4}" fill="none" stroke="{SUGGESTED}" '
                f'stroke-width="2"><title>{escape(name)}: unchanged</title></rect>'
            )
            x_end: float = left + bar_height
        else:
            x_end = sx(value if math.isfinite(value) else 10.0**hi)
            parts.append(
                f'<rect x="{left}" y="{y}" width="{max(x_end - left, 1):.1f}" '
                f'height="{bar_height}" fill="{BAR}" stroke="{BAR_EDGE}">'
                f"<title>{escape(name)}: {label}</title></rect>"
            )
        parts.append(
            f'<text x="{x_end + 4:.1f}" y="{y + bar_height - 3}" font-size="10">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
