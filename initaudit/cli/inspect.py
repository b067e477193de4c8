"""``initaudit inspect PATH``: every tensor with its statistics, scheme and evidence.

Where ``initaudit PATH`` answers "is anything wrong?", ``inspect`` shows the numbers behind the
answer for every tensor, biases and norms included: sample size, mean, std, min, max, excess
kurtosis, role, fans, activation, the identified scheme with its confidence, the alternatives
equally consistent with the data, the goodness-of-fit p-value and the 95% interval of the std.
``--layer GLOB`` keeps the tensors whose name or layer matches. Sample (width 120)::

    mlp_he_sigmoid.onnx · onnx · framework pytorch · 4 tensors
    fc1.weight  kernel  100×300  float32  fan 300→100  act sigmoid (graph)
        n 30000  mean -8.76e-05  std 0.082  min -0.33  max 0.362  kurtosis -0.00968
        scheme He/Kaiming normal (fan_in)  expected std 0.0816  confidence 100%
        evidence: family posterior normal 1, uniform 0, truncated_normal 0 · KS/GOF p 0.904 ·
        std 95% [0.0814, 0.0827] · z 0.677
    fc1.bias  bias  100  float32  act sigmoid (graph)
        n 100  mean 0  std 0  min 0  max 0  kurtosis nan
    fc2.weight  kernel  10×100  float32  fan 100→10  act linear (graph)
        ...
        also consistent: He/Kaiming uniform (fan_in)

``--format json`` prints ``{"tool", "files": [{"path", "format", "status", "error",
"framework", "tensors": [...]}]}`` where each tensor is the report's tensor dict
(:meth:`TensorReport.to_dict`).
"""

from __future__ import annotations

import fnmatch
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer

from ..report import FileReport, Status, TensorReport
from ..reporters._text import evidence_text as _evidence_text
from ..reporters._text import num as _num
from ._app import app
from ._common import UsageError, error, open_output, report_unreadable, use_color
from .options import (
    ActivationOpt,
    ConfigOpt,
    ExcludeOpt,
    HumanOrJsonOpt,
    IncludeOpt,
    JobsOpt,
    NoColorOpt,
    OutputOpt,
    overrides,
)

if TYPE_CHECKING:  # pragma: no cover
    from rich.padding import Padding
    from rich.text import Text

    from ..settings import AuditConfig


def select_tensors(fr: FileReport, layer: str | None) -> list[TensorReport]:
    """The tensors of ``fr`` whose name or layer matches the glob ``layer`` (all if None)."""
    if not layer:
        return list(fr.tensors)
    return [
        t
        for t in fr.tensors
        if fnmatch.fnmatchcase(t.name, layer) or fnmatch.fnmatchcase(t.layer, layer)
    ]


def to_dict(files: list[FileReport], layer: str | None) -> dict[str, Any]:
    from .. import __version__

    return {
        "tool": {"name": "initaudit", "version": __version__},
        "layer_filter": layer,
        "files": [
            {
                "path": fr.path,
                "format": fr.format,
                "status": fr.status.value,
                "error": fr.error,
                "framework": fr.framework,
                "tensors": [t.to_dict() for t in select_tensors(fr, layer)],
                "skipped": [s.to_dict() for s in fr.skipped],
                "notes": list(fr.notes),
            }
            for fr in files
        ],
    }


def write_json(files: list[FileReport], stream: TextIO, layer: str | None) -> None:
    import json

    from ..reporters._text import json_fallback as _fallback

    stream.write(
        json.dumps(
            to_dict(files, layer), indent=2, ensure_ascii=False, allow_nan=False, default=_fallback
        )
        + "\n"
    )


def write_human(
    files: list[FileReport],
    stream: TextIO,
    layer: str | None,
    *,
    color: bool,
    plot: bool = False,
    config: AuditConfig | None = None,
) -> None:
    from rich.text import Text

    from ..reporters.human import print_renderables

    items: list[object] = []
    for index, fr in enumerate(files):
        if index:
            items.append(Text(""))
        head = Text(fr.path, style="bold")
        if fr.status is Status.ERROR:
            head.append(f" · could not be read: {fr.error}", style="bold red")
            items.append(head)
            continue
        tensors = select_tensors(fr, layer)
        head.append(f" · {fr.format}", style="dim")
        if fr.framework:
            head.append(f" · framework {fr.framework}", style="dim")
        shown = f"{len(tensors)} of {len(fr.tensors)}" if layer else f"{len(fr.tensors)}"
        head.append(f" · {shown} tensor{'s' if len(fr.tensors) != 1 else ''}", style="dim")
        items.append(head)
        samples: dict[str, Any] = {}
        problems: dict[str, str] = {}
        if plot:
            from ..reporters._density import analysed_kernels, load_samples

            kernels = {t.name for t in analysed_kernels(fr)}
            samples, problems = load_samples(
                fr.path,
                [t.name for t in tensors if t.name in kernels],
                hints=tuple(config.hints) if config is not None else (),
                seed=config.seed if config is not None else 0,
            )
        for t in tensors:
            items.extend(_tensor_lines(t))
            if plot and (t.name in samples or t.name in problems):
                items.extend(plot_lines(t, fr, samples.get(t.name), problems.get(t.name)))
        for item in fr.skipped:
            items.append(Text(f"  skipped {item.name}: {item.reason}", style="yellow"))
    print_renderables(stream, color, *items)


def _tensor_lines(t: TensorReport) -> list[object]:
    from rich.text import Text

    head = Text.assemble(
        (t.name, "bold magenta"),
        "  ",
        t.role,
        "  ",
        "×".join(str(d) for d in t.shape) or "scalar",
        f"  {t.dtype}",
    )
    if t.fan_in is not None or t.fan_out is not None:
        head.append(
            f"  fan {t.fan_in if t.fan_in is not None else '?'}→"
            f"{t.fan_out if t.fan_out is not None else '?'}"
        )
    act = t.activation or "unknown"
    head.append(f"  act {act}" + (f" ({t.activation_source})" if t.activation_source else ""))
    lines: list[object] = [head]
    if t.skipped:
        lines.append(_detail(Text(f"skipped: {t.skipped}", style="yellow")))
        return lines
    s = t.stats
    if s is not None:
        sample = f" (sample of {s.size})" if s.sampled else ""
        line = (
            f"n {s.n}{sample}  mean {_num(s.mean)}  std {_num(s.std)}  min {_num(s.min)}  "
            f"max {_num(s.max)}  kurtosis {_num(s.excess_kurtosis)}"
        )
        if s.nonfinite:
            line += f"  non-finite {s.nonfinite}"
        lines.append(_detail(Text(line)))
    sc = t.scheme
    if sc is not None:
        scheme_line = Text(f"scheme {sc.label}")
        if sc.expected_std is not None:
            scheme_line.append(f"  expected std {_num(sc.expected_std)}")
        if sc.known:
            scheme_line.append(f"  confidence {round(float(sc.confidence) * 100)}%")
        lines.append(_detail(scheme_line))
        alternatives = list(dict.fromkeys(c.label for c in sc.alternatives if c.label != sc.label))
        if alternatives:
            lines.append(_detail(Text(f"also consistent: {', '.join(alternatives)}", style="dim")))
        evidence = _evidence_text(sc.evidence)
        if evidence:
            lines.append(_detail(Text(f"evidence: {evidence}", style="dim")))
    return lines


# eighths of a cell, for bars drawn with block characters
_EIGHTHS = " ▏▎▍▌▋▊▉█"
# markers differ by shape as well as colour: identified scheme, scheme a finding recommends
_MARKS = {"identified": ("●", "bold blue"), "suggested": ("○", "bold red")}
_OVERLAP_SOURCES = frozenset({"●", "○"})
PLOT_BINS = 24
PLOT_WIDTH = 48


def plot_lines(
    t: TensorReport,
    fr: FileReport,
    sample: Any,
    problem: str | None,
    *,
    bins: int = PLOT_BINS,
    width: int = PLOT_WIDTH,
) -> list[object]:
    """A horizontal histogram of ``sample`` (one row per bin, bar length = density) with a
    marker where each scheme density falls in that row: ● the identified scheme, ○ the scheme a
    finding recommends (e.g. Glorot for a He kernel before a sigmoid)."""
    import numpy as np
    from rich.text import Text

    from ..reporters._density import curves_for, histogram, pdf

    if sample is None or not getattr(sample, "size", 0):
        return [_detail(Text(f"no histogram: {problem or 'no finite values'}", style="yellow"))]
    curves = curves_for(t, fr.findings)
    edges, density = histogram(sample, curves, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    marks = [(c, pdf(centres, c.distribution, c.std)) for c in curves]
    top = max([float(density.max())] + [float(np.max(m)) for _, m in marks]) or 1.0
    lines: list[object] = []
    legend = Text("█ values (", style="dim")
    legend.append(f"{sample.size} sampled)")
    for c in curves:
        mark, style = _MARKS[c.role]
        legend.append("  ")
        legend.append(mark, style=style)
        legend.append(f" {c.label}" + (f" ({c.source})" if c.source else ""))
    if len(curves) > 1:
        legend.append("  ◉ both", style="dim")
    lines.append(_detail(legend))
    for i, centre in enumerate(centres):
        cells = [" "] * (width + 1)
        eighths = round(float(density[i]) / top * width * 8)
        full, part = divmod(eighths, 8)
        for k in range(full):
            cells[k] = "█"
        if part and full < len(cells):
            cells[full] = _EIGHTHS[part]
        styles: dict[int, str] = {}
        for c, m in marks:
            col = min(width, round(float(m[i]) / top * width))
            if float(m[i]) > 0:
                mark, style = _MARKS[c.role]
                if cells[col] in _OVERLAP_SOURCES:  # both densities in the same cell
                    mark, style = "◉", "bold magenta"
                cells[col] = mark
                styles[col] = style
        row = Text(f"{centre:>10.3g} │", style="dim")
        for k, ch in enumerate(cells):
            row.append(ch, style=styles.get(k, "cyan" if ch in _EIGHTHS[1:] else None))
        lines.append(_detail(row))
    return lines


def _detail(text: Text) -> Padding:
    """A detail line under a tensor: indented, and wrapped lines keep the indent."""
    from rich.padding import Padding

    return Padding(text, (0, 0, 0, 4))


def run(
    paths: list[str],
    config: AuditConfig,
    *,
    layer: str | None,
    fmt: str,
    stream: TextIO,
    color: bool,
    jobs: int = 1,
    plot: bool = False,
) -> tuple[list[FileReport], bool]:
    """Audit ``paths`` and print the tensors; returns the file reports and whether the glob
    matched any tensor."""
    from ..runner import audit_all

    files = audit_all(paths, config, jobs=jobs, progress=False)
    if fmt == "json":
        write_json(files, stream, layer)
    else:
        write_human(files, stream, layer, color=color, plot=plot, config=config)
    matched = any(select_tensors(fr, layer) for fr in files if fr.status is not Status.ERROR)
    return files, matched


@app.command("inspect")
def inspect_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            show_default=False,
            help="Checkpoint files, directories or quoted globs.",
        ),
    ],
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer",
            "-l",
            metavar="GLOB",
            show_default=False,
            help="Only tensors whose name or layer matches GLOB (e.g. 'fc*').",
        ),
    ] = None,
    format: HumanOrJsonOpt = "human",
    output: OutputOpt = None,
    activation: ActivationOpt = None,
    config_file: ConfigOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    jobs: JobsOpt = None,
    no_color: NoColorOpt = False,
    plot: Annotated[
        bool,
        typer.Option(
            "--plot",
            help="Draw each kernel's histogram against the identified scheme's density "
            "(and the one a finding recommends) in the terminal.",
        ),
    ] = False,
) -> None:
    """Show every tensor (biases and norms included) with its statistics, role, fans,
    activation, identified init scheme, confidence and evidence. Exit 2 if a file could not be
    read or --layer matches no tensor."""
    from ..config import ConfigError, load_settings
    from ..discover import DiscoveryError, discover

    fmt = format.strip().lower()
    try:
        if fmt not in ("human", "json"):
            raise UsageError(
                f"--format: unknown format {format!r} for `inspect` (use human or json)"
            )
        if plot and fmt != "human":
            raise UsageError("--plot draws in the terminal: use it with --format human")
        settings = load_settings(
            config_file,
            overrides(activation=activation, include=include, exclude=exclude, jobs=jobs),
        )
        inputs = discover(paths, include=settings.include, exclude=settings.exclude)
        sink = open_output(output)
    except (UsageError, ConfigError, DiscoveryError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    config = settings.audit_config()
    stream = sink or sys.stdout
    try:
        files, matched = run(
            inputs,
            config,
            layer=layer,
            fmt=fmt,
            stream=stream,
            jobs=settings.jobs,
            color=False if sink else use_color(sys.stdout, no_color),
            plot=plot,
        )
    finally:
        if sink is not None:
            sink.close()
    for fr in files:
        report_unreadable(fr)
    if any(fr.status is Status.ERROR for fr in files):
        raise typer.Exit(2)
    if layer and not matched:
        error(f"--layer: no tensor or layer matches {layer!r}")
        raise typer.Exit(2)
